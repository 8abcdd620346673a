"""A tiny Hydra sweep through the real CLI, then the report: files exist and numbers match the runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


def dpbench(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, vision_data_root):
    results = tmp_path_factory.mktemp("sweep") / "results"
    env = {**os.environ, "DPBENCH_DATA_ROOT": str(vision_data_root)}
    overrides = [
        "mechanism=fixed,adaptive", "dataset=digits,mnist", "dataset.verify_checksums=false", "seed=0,1",
        "train.epochs=1", "progress=false", f"paths.results={results}",
    ]
    done = dpbench("dpbench", "-m", *overrides, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return results, env, overrides


@pytest.mark.slow
def test_sweep_writes_one_finished_row_per_run(sweep):
    results, _, _ = sweep
    rows = pd.read_json(results / "results.jsonl", lines=True)
    assert len(rows) == 8 and set(rows["status"]) == {"finished"}
    assert set(zip(rows["mechanism"], rows["dataset"], rows["seed"])) == {
        (m, d, s) for m in ("fixed", "adaptive") for d in ("digits", "mnist") for s in (0, 1)
    }
    assert all(0.99 * 3 <= e <= 3 for e in rows["epsilon"])


@pytest.mark.slow
def test_relaunching_a_sweep_skips_finished_runs(sweep):
    results, env, overrides = sweep
    again = dpbench("dpbench", "-m", *overrides, env=env)
    assert again.returncode == 0
    assert again.stderr.count("run already finished") + again.stdout.count("run already finished") == 8
    assert len(pd.read_json(results / "results.jsonl", lines=True)) == 8


@pytest.mark.slow
def test_report_tables_and_plots_match_the_runs(sweep, tmp_path):
    results, env, _ = sweep
    done = dpbench("dpbench.report", str(results), "--out", str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    rows = pd.read_json(results / "results.jsonl", lines=True)
    for _, entry in board.iterrows():
        runs = rows[(rows["dataset"] == entry["dataset"]) & (rows["mechanism"] == entry["mechanism"])]
        assert entry["accuracy_mean"] == pytest.approx(runs["final_accuracy"].mean())
        assert entry["accuracy_std"] == pytest.approx(runs["final_accuracy"].std(ddof=1))
        assert entry["seeds"] == 2
    comparisons = pd.read_csv(tmp_path / "comparisons.csv")
    assert set(comparisons["mechanism"]) == {"adaptive"} and len(comparisons) == 2
    for name in ("accuracy_per_epoch.png", "epsilon_per_epoch.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / name).stat().st_size > 10000
    assert "| 3 | fixed |" in (tmp_path / "leaderboard.md").read_text()


@pytest.mark.slow
def test_a_failing_run_does_not_stop_the_sweep(tmp_path):
    results = tmp_path / "results"
    done = dpbench(
        "dpbench", "-m", "privacy.target_epsilon=-1,3", "train.epochs=1", "progress=false", f"paths.results={results}",
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (results / "results.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in rows) == ["failed", "finished"]
    failed = next(r for r in rows if r["status"] == "failed")
    assert "target epsilon must be" in failed["error"]
    assert "PrivacyConfigError" in (Path(failed["run_dir"]) / "error.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_and_cluster_launchers_run_a_sweep(launcher, tmp_path):
    results = tmp_path / "results"
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    done = dpbench(
        "dpbench", "-m", f"hydra/launcher={launcher}", *extra, "seed=0,1", "train.epochs=1", "progress=false",
        f"paths.results={results}", env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.read_json(results / "results.jsonl", lines=True)
    assert sorted(rows["seed"]) == [0, 1] and set(rows["status"]) == {"finished"}
