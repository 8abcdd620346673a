"""Public-proxy tuning: trials on a named public dataset, the choice applied to the private one in an ordinary
run whose summary records ``tuned_on`` and charges no tuning cost to the private data; a proxy that is the private
data itself is refused."""

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from dpbench.privacy.calibration import TrainingPlan, calibrate_noise_multiplier
from dpbench.report import write_report
from dpbench.search.__main__ import final_seeds, main, search_name
from dpbench.search.trial import PublicTarget
from dpbench.search.tuning_record import PUBLIC_PROXY
from dpbench.training.run_summary import tuning


def test_a_proxy_that_reads_the_private_data_is_refused(tmp_path, capsys):
    # mnist_scattering is MNIST too: "tuning on public data" there would be tuning on the private data for free
    assert main(["tune=public", "tune.tuned_on=mnist", "dataset=mnist_scattering", f"paths.results={tmp_path}"]) == 1
    assert "reads the same data (mnist) as the private run" in capsys.readouterr().err
    assert main(["tune=public", f"paths.results={tmp_path}"]) == 1
    assert "needs the public dataset to tune on: tune.tuned_on=NAME" in capsys.readouterr().err
    assert not (tmp_path / "searches").exists()  # nothing planned, nothing run


def test_only_the_private_run_of_a_proxy_records_tuned_on(make_config):
    record = tuning(make_config("+tune=public", "tune.tuned_on=mnist"))
    assert record["tuning"] == PUBLIC_PROXY and record["tuned_on"] == "mnist"
    assert record["tuning_cost"].startswith("none charged to the private data")
    assert record["searched"] == ["train.lr", "train.max_grad_norm"] and record["trials_run"] == 8
    assert tuning(make_config("+tune=public", "tune.tuned_on=mnist", "tune.trial=t0")) == {}  # a trial on mnist
    assert tuning(make_config("+tune=private", "tune.trial=t0")) == {}
    assert tuning(make_config()) == {}


def test_final_seeds_name_the_private_runs_and_are_checked(make_config):
    cfg = make_config("+tune=public", "tune.tuned_on=mnist", "seed=3")
    assert final_seeds(cfg) == [3]  # the search's own seed only
    assert final_seeds(make_config("+tune=public", "tune.tuned_on=mnist", "seed=3", "tune.final_seeds=[3,0,1]")) == [
        3, 0, 1]
    for bad, message in [("[0,0]", "distinct seeds"), ("[]", "at least one"), ("[0.5]", "integer seeds"),
                         ("7", "list of integer seeds")]:
        with pytest.raises(ValueError, match=message):
            final_seeds(make_config("+tune=public", "tune.tuned_on=mnist", f"tune.final_seeds={bad}"))


def test_final_seeds_are_refused_by_a_private_search_and_do_not_name_the_search(tmp_path, capsys):
    # a private search releases its selected model only: a run at another seed would be an unaccounted release
    assert main(["tune.final_seeds=[0,1,2]", f"paths.results={tmp_path}"]) == 1
    assert "tune.final_seeds is for a public proxy" in capsys.readouterr().err
    assert not (tmp_path / "searches").exists()
    overrides = ["tune.tuned_on=mnist", "dataset=digits"]
    assert search_name(overrides, "public") == search_name([o for o in overrides if "final_seeds" not in o], "public")


def test_a_proxy_trial_is_one_run_at_the_target():
    plan = TrainingPlan(1800, 512, 2)
    assert PublicTarget(3.0, 1e-5, "pld").trial_multiplier(plan, lambda step, epoch: 1.0) == pytest.approx(
        calibrate_noise_multiplier(3.0, 1e-5, plan, accountant="pld"))


@pytest.mark.slow
def test_a_proxy_search_tunes_on_public_data_and_applies_the_choice(tmp_path, vision_data_root, monkeypatch):
    monkeypatch.setenv("DPBENCH_DATA_ROOT", str(vision_data_root))
    results = tmp_path / "results"
    overrides = ["tune=public", "tune.tuned_on=mnist", "tune.trials=2", "dataset.verify_checksums=false",
                 "train.epochs=1", "progress=false", f"paths.results={results}"]
    assert main(overrides) == 0
    (directory,) = (results / "searches").iterdir()
    trials = [json.loads(path.read_text()) for path in directory.glob("runs/*/summary.json")]
    assert sorted(t["trial"] for t in trials) == ["t0", "t1"] and {t["dataset"] for t in trials} == {"mnist"}
    result = json.loads((directory / "result.json").read_text())
    applied = json.loads((results / "runs" / f"public_proxy,{directory.name}" / "summary.json").read_text())
    assert applied["dataset"] == "digits" and applied["tuned_on"] == "mnist" and applied["tuning"] == PUBLIC_PROXY
    assert [run["final_accuracy"] for run in result["applied"]] == [applied["final_accuracy"]]
    for key, value in result["released"]["overrides"].items():  # the chosen values, applied as they were chosen
        section, name = key.split(".")
        assert applied["config"][section][name] == value
    # its own run at the target on the whole private training set: nothing held out, no tuning cost charged
    assert 0.99 * 3 <= applied["epsilon"] <= 3
    assert applied["sampling_rate"] == pytest.approx(applied["config"]["train"]["batch_size"] / 1437)
    assert [r["name"] for r in applied["statistics_releases"]] == []
    board = pd.read_csv(write_report(results, tmp_path / "report")["leaderboard_csv"])
    assert list(board["tuning"]) == [PUBLIC_PROXY] and list(board["tuned_on"]) == ["mnist"]


@pytest.mark.slow
def test_final_seeds_run_the_choice_at_each_seed_and_a_relaunch_adds_only_new_ones(
        tmp_path, vision_data_root, monkeypatch):
    monkeypatch.setenv("DPBENCH_DATA_ROOT", str(vision_data_root))
    results = tmp_path / "results"
    overrides = ["tune=public", "tune.tuned_on=mnist", "tune.trials=1", "dataset.verify_checksums=false",
                 "train.epochs=1", "progress=false", f"paths.results={results}"]
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    assert main([*overrides, *launcher, "tune.final_seeds=[1,0]"]) == 0
    (directory,) = (results / "searches").iterdir()  # final_seeds do not make it another search
    assert private_multirun(results) == ("JoblibLauncher", "seed=1,0")  # both seeds in one multirun, as the trials
    result = json.loads((directory / "result.json").read_text())
    assert [run["seed"] for run in result["applied"]] == [1, 0]
    runs = {run["seed"]: json.loads((Path(run["run_dir"]) / "summary.json").read_text()) for run in result["applied"]}
    for summary in runs.values():  # the same chosen values at every seed, each run its own at the target
        assert summary["tuned_on"] == "mnist" and 0.99 * 3 <= summary["epsilon"] <= 3
        for key, value in result["released"]["overrides"].items():
            section, name = key.split(".")
            assert summary["config"][section][name] == value
    assert Path(runs[0]["run_dir"]).name == f"public_proxy,{directory.name}"  # the search's own seed
    def written(seed: int) -> int:
        return (Path(runs[seed]["run_dir"]) / "summary.json").stat().st_mtime_ns

    finished = {seed: written(seed) for seed in runs}
    assert main([*overrides, *launcher, "tune.final_seeds=[0,1,2]"]) == 0
    result = json.loads((directory / "result.json").read_text())
    assert [run["seed"] for run in result["applied"]] == [0, 1, 2]
    assert private_multirun(results) == ("JoblibLauncher", "seed=2")  # only the new seed runs
    assert {seed: written(seed) for seed in (0, 1)} == finished  # read, not run again
    board = pd.read_csv(write_report(results, tmp_path / "report")["leaderboard_csv"])
    assert len(board) == 1 and board["n_runs"].iloc[0] == 3 and board["seeds"].iloc[0] == 3  # one configuration


def private_multirun(results: Path) -> tuple[str, str]:
    """The launcher and the seed override of the last multirun in ``results/runs`` (the private runs')."""
    recorded = OmegaConf.load(results / "runs" / "multirun.yaml")
    (seeds,) = [o for o in recorded.hydra.overrides.task if o.startswith("seed=")]
    return recorded.hydra.launcher._target_.rsplit(".", 1)[-1], seeds
