"""Publishing a results folder (``python -m dpbench.report RESULTS --publish DIR``): DIR holds nothing that counts a
private search's trials (K, the trials, the selected trial's index) and no checkpoint, and reports exactly as the
folder it came from; publishing again, or from another folder, only adds the runs DIR does not hold yet."""

import hashlib
import json

import pandas as pd
import pytest
from test_tuned_leaderboard import FIXED, write_run, write_search

from dpbench.report import main as report_main
from dpbench.reporting.leaderboard import leaderboard
from dpbench.reporting.publish import publish
from dpbench.reporting.results_table import load_results
from dpbench.reporting.tuned_pipelines import pipelines

# K, the selected trial's index (t1) and an unreleased trial's (t2), the trials' folder
SECRETS = ('"trials_run"', '"trials_finished"', '"trial"', '"t1"', '"t2"', "searches")


@pytest.fixture
def operator_results(tmp_path):
    """Two untuned runs and two private searches of fixed, each with K = 4: the selected trial t1 and three
    others, every run directory with a checkpoint."""
    results = tmp_path / "results"
    results.mkdir()
    for seed, accuracy in enumerate((0.90, 0.92)):
        write_run(results, f"fixed-seed{seed}", FIXED, accuracy, seed=seed, finished_at="2026-12-06T12:16:30+00:00")
    for seed, accuracy in enumerate((0.93, 0.95)):
        write_search(results, f"mechanism=fixed,seed={seed}", FIXED, accuracy,
                     {"train.lr": 0.1, "mechanism.max_grad_norm": 1.0}, trials_run=4,
                     pipeline="pipeline-fixed", unreleased=(0.5, 0.6, 0.7))
    for run in results.rglob("summary.json"):
        (run.parent / "checkpoint.pt").write_bytes(b"model")
    return results


def published_text(folder) -> str:
    return "\n".join(path.read_text() for path in sorted(folder.rglob("*")) if path.is_file())


def test_the_published_folder_holds_no_trial_count_no_trial_and_no_checkpoint(operator_results, tmp_path):
    assert all(secret in published_text(operator_results) for secret in SECRETS)  # the operator's folder has them
    out = tmp_path / "published"
    added = publish(operator_results, out)
    assert len(added) == 4  # 2 untuned runs + the 2 released models; none of the 6 unreleased trials
    text = published_text(out)
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"published files carry {leaked}"
    assert not list(out.rglob("checkpoint.pt"))
    assert sorted(path.name for path in out.iterdir()) == ["results.jsonl", "runs"]
    rows = pd.read_json(out / "results.jsonl", lines=True)
    assert sorted(rows["final_accuracy"]) == pytest.approx([0.90, 0.92, 0.93, 0.95])
    assert all(not path.startswith("/") for path in rows["run_dir"])
    # each published row is the row as written, less what was removed: nothing retyped on the way
    written = [json.loads(line) for line in (operator_results / "results.jsonl").read_text().splitlines()]
    untuned = [row for row in written if "tuning" not in row and "trial" not in row]
    published = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [row["finished_at"] for row in published if "finished_at" in row] == [r["finished_at"] for r in untuned]


def test_a_published_name_cannot_be_matched_against_the_trials(operator_results, tmp_path):
    """The attack: the released trial's directory is <search>/runs/t1 here (in a real search, the search's folder
    and overrides with +trial=tK, all rebuildable from the published config), so hashing the candidates t0, t1, ...
    as the names are hashed would find the selected index, and with it a lower bound on K."""
    out = tmp_path / "published"
    publish(operator_results, out)
    names = {path.name for path in (out / "runs").iterdir()}
    trial_dirs = [summary.parent for summary in (operator_results / "searches").rglob("summary.json")]
    assert len(trial_dirs) == 8  # 2 searches x 4 trials
    for trial_dir in trial_dirs:
        for identity in (str(trial_dir), f"run:{trial_dir}", trial_dir.name):
            assert hashlib.sha256(identity.encode()).hexdigest()[:16] not in names


def test_the_published_folder_reports_as_the_original(operator_results, tmp_path):
    out = tmp_path / "published"
    publish(operator_results, out)
    columns = ["tuning", "mechanism", "accuracy_mean", "n_runs", "epsilon_spent", "config_id"]
    original, published = (leaderboard(load_results(folder))[columns] for folder in (operator_results, out))
    pd.testing.assert_frame_equal(original.sort_values("accuracy_mean").reset_index(drop=True),
                                  published.sort_values("accuracy_mean").reset_index(drop=True))
    tuned = pipelines(load_results(out))
    assert len(tuned) == 1 and tuned.iloc[0]["n_searches"] == 2
    assert tuned.iloc[0]["accuracy_mean"] == pytest.approx(0.94)
    assert pipelines(load_results(operator_results)).equals(tuned)


def test_publishing_again_adds_only_new_runs(operator_results, tmp_path):
    out = tmp_path / "published"
    publish(operator_results, out)
    assert publish(operator_results, out) == []
    later = tmp_path / "later"  # another session's results folder: a third search of the same pipeline
    later.mkdir()
    write_search(later, "mechanism=fixed,seed=2", FIXED, 0.91, {"train.lr": 0.1, "mechanism.max_grad_norm": 1.0},
                 trials_run=4, pipeline="pipeline-fixed")
    assert len(publish(later, out)) == 1
    tuned = pipelines(load_results(out))
    assert tuned.iloc[0]["n_searches"] == 3
    assert tuned.iloc[0]["accuracy_mean"] == pytest.approx((0.93 + 0.95 + 0.91) / 3)
    assert len(pd.read_json(out / "results.jsonl", lines=True)) == 5


def test_the_cli_publishes_and_refuses_the_operator_view(operator_results, tmp_path, capsys):
    out = tmp_path / "published"
    report_main([str(operator_results), "--publish", str(out)])
    assert "published 4 new run(s)" in capsys.readouterr().out
    assert (out / "report" / "leaderboard.md").exists()
    assert json.loads((out / "results.jsonl").read_text().splitlines()[0])["run_dir"].startswith("runs/")
    with pytest.raises(SystemExit):
        report_main([str(operator_results), "--publish", str(out), "--operator-view"])
    assert "exclude each other" in capsys.readouterr().err


def test_a_search_planned_from_a_fixed_seed_is_not_published(operator_results, tmp_path, capsys):
    """A ninth red team redrew K = 4 and every trial from a published config's tune.seed: such a search is refused,
    and nothing of the folder is published."""
    for path in operator_results.rglob("summary.json"):
        summary = json.loads(path.read_text())
        if isinstance(summary.get("config"), dict):
            summary["config"]["tune"] = dict(summary["config"].get("tune") or {}) | {"seed": 8}
            path.write_text(json.dumps(summary))
    out = tmp_path / "published"
    with pytest.raises(SystemExit, match=r"2 private search\(es\) drew K and their trials from a fixed tune.seed"):
        report_main([str(operator_results), "--publish", str(out)])
    assert not out.exists()


def test_a_search_whose_summary_cannot_be_read_is_not_published(operator_results, tmp_path):
    """A tenth red team moved a seeded search's results folder: its rows' run directories no longer held the
    summaries that say how it was planned, and it was published, seed included in its id. A private search whose
    plan cannot be read is refused; so is one whose id names a seed."""
    moved = tmp_path / "moved"
    operator_results.rename(moved)
    with pytest.raises(SystemExit, match="have no readable summary to say they did not"):
        report_main([str(moved), "--publish", str(tmp_path / "published")])
    assert not (tmp_path / "published").exists()
