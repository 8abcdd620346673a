"""``python -m dpbench.telemetry synthesize --run RUN_DIR``: sampling a finished run's checkpointed model."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from dpbench.cli import CONFIG_DIR
from dpbench.telemetry.__main__ import main
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
