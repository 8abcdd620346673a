"""scripts/telemetry_worlds.py gives every world's run its own seed: the worlds share the release's layout, so
under one seed they would share the noise on every entry and their passes would not be independent draws."""

from __future__ import annotations

import pytest
from script_loader import load_script

from dpbench.telemetry.baselines import BASELINE, HALVES


def _row(world: int) -> dict:
    heads = {f"{name}_{key}": 8 for name in ("dp", BASELINE, HALVES)
             for key in ("queries_passed", "value_queries_passed", "queries_evaluable")}
    scores = {f"{name}_value_mean_score": 0.5 for name in ("dp", BASELINE, HALVES)}
    return {"world": world, "seed": 0, "epsilon": 4.0, **heads, **scores, "value_fails": []}


def test_each_world_and_base_seed_runs_with_a_seed_of_its_own(tmp_path, monkeypatch):
    script = load_script("telemetry_worlds")
    seeds = {}
    monkeypatch.setattr(script, "run_world", lambda world, run_dir, devices, eps, delta, seed:
                        seeds.setdefault((world, run_dir.parent.name), seed))
    monkeypatch.setattr(script, "world_row", lambda world, run_dir: _row(world))
    for base in (0, 1, 2):
        assert script.main(["--out", str(tmp_path / f"base{base}"), "--worlds", "1", "2", "17", "999",
                            "--seed", str(base)]) == 0
    assert len(seeds) == 12 and len(set(seeds.values())) == 12


def test_a_world_beyond_the_seed_stride_is_refused():
    script = load_script("telemetry_worlds")
    with pytest.raises(ValueError, match="out of range"):
        script.run_seed(0, script.SEEDS_PER_BASE)
