"""``python -m dpbench.telemetry synthesize --run RUN_DIR``: sampling a finished run's checkpointed model; and
``scripts/telemetry_rerelease.py``, which matches it to another release of a simulated run's marginals."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from script_loader import load_script

from dpbench.cli import CONFIG_DIR
from dpbench.telemetry.__main__ import main
from dpbench.telemetry.marginals import RELEASED_FILE, sensitivity
from dpbench.training.experiment import run_experiment


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_run_overrides):
    root = tmp_path_factory.mktemp("tiny_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DPBENCH_DATA_ROOT", str(root / "data"))
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=tiny_run_overrides(root, "model=vae_hurdle"))
        summary = run_experiment(cfg, root / "run")
    return root / "run", summary


@pytest.mark.slow
def test_resynthesis_reproduces_the_runs_own_scores(tiny_run, tmp_path, capsys):
    run_dir, summary = tiny_run
    main(["synthesize", "--run", str(run_dir), "--out", str(tmp_path / "again")])
    out = capsys.readouterr().out
    assert "2,000 devices sampled" in out and "(epoch 1)" in out
    assert len(list((tmp_path / "again" / "tables").glob("*.parquet"))) == 13
    scores = pd.read_csv(tmp_path / "again" / "scores.csv")
    expected = {q: s["score"] for q, s in summary["utility"]["per_query"].items()}
    assert {q: None if pd.isna(s) else s for q, s in zip(scores["query"], scores["score"])} == expected
    assert summary["utility"]["headline"] in out


@pytest.mark.slow
def test_another_seed_gives_other_tables(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    main(["synthesize", "--run", str(run_dir), "--out", str(tmp_path / "a"), "--seed", "5"])
    main(["synthesize", "--run", str(run_dir), "--out", str(tmp_path / "b"), "--seed", "6"])
    a, b = (pd.read_parquet(tmp_path / d / "tables" / "system_sysinfo_unique_normalized.parquet") for d in "ab")
    assert len(a) == len(b) == 2000 and not a["countryname_normalized"].equals(b["countryname_normalized"])


def test_bad_run_directories_are_clear_errors(tmp_path):
    with pytest.raises(SystemExit, match="config.yaml does not exist: pass the directory of a telemetry run"):
        main(["synthesize", "--run", str(tmp_path)])
    (tmp_path / "config.yaml").write_text("dataset:\n  _target_: dpbench.data.vision.load_mnist\nseed: 0\n")
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="not telemetry"):
        main(["synthesize", "--run", str(tmp_path)])


@pytest.mark.slow
def test_a_rerelease_is_a_fixed_draw_of_the_current_release_and_refuses_real_tables(tiny_run, tmp_path):
    """scripts/telemetry_rerelease.py: the same release seed gives the same release and scores (a paired
    comparison of release designs), at the current code's bound; a run over a user's tables is refused,
    since a second release of its rows would spend their budget again."""
    run_dir, _ = tiny_run
    script = load_script("telemetry_rerelease")
    first = script.rerelease(run_dir, tmp_path / "a", release_seed=7)
    again = script.rerelease(run_dir, tmp_path / "b", release_seed=7)
    assert first | {"run": None} == again | {"run": None}
    with np.load(tmp_path / "a" / RELEASED_FILE) as a, np.load(tmp_path / "b" / RELEASED_FILE) as b, \
            np.load(run_dir / RELEASED_FILE) as own:
        assert np.array_equal(a["noisy_sum"], b["noisy_sum"]) and not np.array_equal(a["noisy_sum"], own["noisy_sum"])
        assert float(a["bound"]) == pytest.approx(sensitivity())
    assert (tmp_path / "a" / "synthetic" / "tables" / "system_web_cat_pivot_duration.parquet").exists()
    real = tmp_path / "real_run"
    shutil.copytree(run_dir, real)
    config = OmegaConf.load(real / "config.yaml")
    config.dataset.path = str(tmp_path / "their_tables")
    OmegaConf.save(config, real / "config.yaml")
    with pytest.raises(SystemExit, match="twice"):
        script.rerelease(real, tmp_path / "c", release_seed=7)
