"""Each built-in trains two epochs on the digits dataset through the CLI's config and spends exactly
the target epsilon."""

import json

import pytest

from dpbench.training.experiment import run_experiment


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["perlayer", "noise_decay", "momentum", "normalized", "perlayer_decay", "fixed_momentum"]
)
def test_builtin_trains_and_spends_the_target(make_config, tmp_path, name):
    summary = run_experiment(make_config(f"mechanism={name}"), tmp_path / "run")
    assert summary["mechanism"] == name and summary["contract"] == "structured"
    assert 0.99 * 3.0 <= summary["epsilon"] <= 3.0
    assert summary["final_accuracy"] > 0.2  # learns something in two epochs (chance: 0.1)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    decays = name in ("noise_decay", "perlayer_decay")
    ratio = metrics[1]["noise_multiplier"] / metrics[0]["noise_multiplier"]
    assert ratio == pytest.approx(0.5 if decays else 1.0)  # end_ratio 0.5 over two epochs
