"""The leaderboard never mixes configurations: runs written directly as summary.json + results.jsonl (no training),
differing in epochs, model, learning rate and mechanism class, each land in their own row, and Δ vs fixed pairs
only configurations that are identical outside the mechanism group."""

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from dpbench.report import write_report
from dpbench.reporting.leaderboard import compare_to_baseline, confounders, leaderboard
from dpbench.reporting.results_table import load_results

BASE = {
    "seed": 0, "device": "auto", "resume": False, "overwrite": False, "progress": True,
    "paths": {"results": "results"},
    "dataset": {"_target_": "dpbench.data.load_dataset", "name": "digits", "root": "data_root"},
    "model": {"_target_": "dpbench.models.DigitsCNN"},
    "train": {"epochs": 30, "lr": 0.1, "batch_size": 256, "physical_batch_size": 256},
    "mechanism": {"_target_": "mechanisms.fixed.FixedClipping", "name": "fixed", "max_grad_norm": 1.0},
    "privacy": {"target_epsilon": 3.0, "target_delta": 1e-5},
}
FIXED = "mechanisms.fixed.FixedClipping"
ADAPTIVE_CLASS = "mechanisms.adaptive.AdaptiveClipping"
OTHER_MODEL = "dpbench.models.OtherCNN"
ADAPTIVE = {"_target_": ADAPTIVE_CLASS, "name": "adaptive", "max_grad_norm": 1.0,
            "target_quantile": 0.5}


def run(results: Path, name: str, accuracy: float, seed: int = 0, mechanism: dict | None = None,
        status: str = "finished", mechanism_class: str | None = None, overrides: dict | None = None) -> None:
    """Writes one run's summary.json and results row; ``overrides`` maps dotted config keys to values."""
    config = copy.deepcopy(BASE) | {"seed": seed}
    config["mechanism"] = copy.deepcopy(mechanism or BASE["mechanism"])
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    run_dir = results / "runs" / f"{name}-seed{seed}"
    run_dir.mkdir(parents=True)
    summary = {
        "status": status, "dataset": "digits", "mechanism": config["mechanism"]["name"], "seed": seed,
        "mechanism_class": mechanism_class or config["mechanism"]["_target_"], "contract": "structured",
        "final_accuracy": accuracy, "target_epsilon": config["privacy"]["target_epsilon"], "epsilon": 2.99,
        "verdict": "VERIFIED",
        "wall_seconds": 10.0, "run_dir": str(run_dir), "config": config,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    row = {key: value for key, value in summary.items() if key != "config"}
    with open(results / "results.jsonl", "a") as table:
        table.write(json.dumps(row) + "\n")


@pytest.fixture
def results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    run(results, "fixed", 0.95, seed=0)
    run(results, "fixed", 0.96, seed=1)
    run(results, "fixed-elsewhere", 0.97, seed=2, overrides={  # execution-only keys: the same configuration
        "progress": False, "device": "cpu", "paths.results": "/elsewhere", "dataset.root": "/data",
        "train.physical_batch_size": 64})
    run(results, "fixed-crashed", 0.10, seed=3, status="failed")
    run(results, "fixed-1epoch", 0.20, seed=2, overrides={"train.epochs": 1})
    run(results, "fixed-model", 0.70, seed=0, overrides={"model._target_": OTHER_MODEL})
    run(results, "my-class", 0.50, seed=0, mechanism={**BASE["mechanism"], "_target_": "my.Class"},
        mechanism_class="my.Class")
    run(results, "adaptive", 0.97, seed=0, mechanism=ADAPTIVE)
    run(results, "adaptive", 0.99, seed=1, mechanism=ADAPTIVE)
    run(results, "adaptive-1epoch", 0.30, seed=0, mechanism=ADAPTIVE, overrides={"train.epochs": 1})
    run(results, "adaptive-lr", 0.90, seed=0, mechanism=ADAPTIVE, overrides={"train.lr": 0.5})
    return results


@pytest.fixture
def loaded(results):
    return load_results(results)


DEFAULTS = {"train.epochs": 30, "train.lr": 0.1, "model._target_": "dpbench.models.DigitsCNN"}


def config_of(loaded, mechanism_class: str, **changes) -> str:
    """The one config_id among the loaded runs of this class whose config has DEFAULTS updated by ``changes``."""
    wanted = DEFAULTS | {key.replace("__", "."): value for key, value in changes.items()}
    ids = {row["config_id"] for _, row in loaded.iterrows() if row["mechanism_class"] == mechanism_class
           and all(row["config"][key] == value for key, value in wanted.items())}
    assert len(ids) == 1, ids
    return ids.pop()


def board_row(board, config: str):
    rows = board[board["config_id"] == config]
    assert len(rows) == 1
    return rows.iloc[0]


def test_runs_of_different_configurations_never_share_a_row(loaded):
    board = leaderboard(loaded)
    # every row holds runs of exactly one defining config, whatever epochs, model, lr or mechanism class
    for _, row in board.iterrows():
        runs = loaded[(loaded["mechanism"] == row["mechanism"]) & (loaded["config_id"] == row["config_id"])]
        assert len({json.dumps(config, sort_keys=True) for config in runs["config"]}) == 1
    assert len(board) == len(set(board["config_id"])) == 7
    assert len(board[board["mechanism"] == "fixed"]) == 4  # default, 1 epoch, other model, my.Class
    default = board_row(board, config_of(loaded, FIXED))
    assert default["accuracy_mean"] == pytest.approx((0.95 + 0.96 + 0.97) / 3)  # the failed run is not averaged
    assert board_row(board, config_of(loaded, FIXED, train__epochs=1))["accuracy_mean"] == pytest.approx(0.20)
    other_model = board_row(board, config_of(loaded, FIXED, model___target_=OTHER_MODEL))
    assert other_model["accuracy_mean"] == pytest.approx(0.70)
    plugin = board_row(board, config_of(loaded, "my.Class"))
    assert plugin["accuracy_mean"] == pytest.approx(0.50) and plugin["mechanism"] == "fixed"
    assert "mechanism_class=my.Class" in plugin["differs"] and "train.epochs=30" in plugin["differs"]
    assert "train.epochs=1," in board_row(board, config_of(loaded, ADAPTIVE_CLASS, train__epochs=1))["differs"]


def test_rows_count_the_runs_they_average(loaded):
    board = leaderboard(loaded)
    assert board_row(board, config_of(loaded, FIXED))["n_runs"] == 3
    assert board_row(board, config_of(loaded, ADAPTIVE_CLASS))["n_runs"] == 2
    assert sorted(board["n_runs"]) == [1, 1, 1, 1, 1, 2, 3]
    assert board["n_runs"].sum() == len(loaded) == 10  # every finished run once, the failed one nowhere


def test_delta_pairs_only_an_otherwise_identical_fixed_configuration(loaded):
    comparisons = compare_to_baseline(loaded, resamples=200).set_index("config_id")
    fixed = config_of(loaded, FIXED)
    expected = {
        config_of(loaded, ADAPTIVE_CLASS): (fixed, 0.98 - 0.96),
        config_of(loaded, ADAPTIVE_CLASS, train__epochs=1): (config_of(loaded, FIXED, train__epochs=1), 0.30 - 0.20),
        config_of(loaded, "my.Class"): (fixed, 0.50 - 0.96),  # a plugin named fixed is compared, not the baseline
    }
    assert set(comparisons.index) == set(expected)  # adaptive at lr 0.5 has no fixed at lr 0.5: not compared
    for config, (baseline, difference) in expected.items():
        assert comparisons.loc[config, "baseline_config_id"] == baseline
        assert comparisons.loc[config, "difference"] == pytest.approx(difference)
    assert comparisons.loc[config_of(loaded, ADAPTIVE_CLASS), ["n_runs", "baseline_n_runs"]].tolist() == [2, 3]


def test_a_comparisons_interval_does_not_depend_on_the_other_rows(results):
    """The bootstrap of each pair is drawn from its own generator: adding runs of another configuration (a new
    mechanism in the table) leaves every existing comparison's CI as it was."""
    before = compare_to_baseline(load_results(results), resamples=200).set_index("config_id")
    ablation = {**BASE["mechanism"], "name": "ablation", "_target_": "my.Ablation"}  # sorts before the others
    run(results, "ablation", 0.93, seed=0, mechanism=ablation, mechanism_class="my.Ablation")
    run(results, "ablation", 0.94, seed=1, mechanism=ablation, mechanism_class="my.Ablation")
    after = compare_to_baseline(load_results(results), resamples=200).set_index("config_id")
    assert len(after) == len(before) + 1
    pd.testing.assert_frame_equal(after.loc[before.index], before)


def test_the_report_notes_keys_that_differ_besides_the_mechanism(loaded):
    notes = confounders(loaded)
    assert notes == {("digits", 3.0, "untuned"): ["model._target_", "train.epochs", "train.lr"]}
    same = loaded[loaded["config"].map(lambda c: c["train.epochs"] == 30 and c["train.lr"] == 0.1
                                       and c["model._target_"] == "dpbench.models.DigitsCNN")]
    assert confounders(same) == {("digits", 3.0, "untuned"): []}


def test_markdown_shows_config_ids_run_counts_notes_and_na_for_one_run(results, tmp_path):
    files = write_report(results, tmp_path / "report")
    text = files["leaderboard_md"].read_text()
    assert "these rows differ in more than the mechanism: model._target_, train.epochs, train.lr" in text
    assert "nan" not in text.lower()
    lines = [line for line in text.splitlines() if line.startswith("| 3 |")]
    assert len(lines) == 7
    one_epoch_adaptive = next(line for line in lines if "| adaptive |" in line and "train.epochs=1" in line)
    assert "30.00 ± n/a | 1 |" in one_epoch_adaptive
    assert "+10.00 [n/a] | n/a |" in one_epoch_adaptive
    default_fixed = next(line for line in lines if "| 96.00" in line)
    assert "96.00 ± 1.00 | 3 |" in default_fixed
    board = pd.read_csv(files["leaderboard_csv"])
    assert {"config_id", "differs", "n_runs", "mechanism_class"} <= set(board.columns)
    assert "config" not in board.columns


def test_plots_draw_one_line_per_configuration(results, tmp_path):
    run(results, "fixed-eps1", 0.90, seed=0, overrides={"privacy.target_epsilon": 1.0})
    for summary in (results / "runs").glob("*/summary.json"):
        accuracy = json.loads(summary.read_text())["final_accuracy"]
        epochs = [{"epoch": e, "test_accuracy": accuracy * e / 2, "epsilon": 1.5 * e} for e in (1, 2)]
        (summary.parent / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in epochs))
    loaded = load_results(results)
    at_one = loaded[loaded["target_epsilon"] == 1.0]
    default = loaded[loaded["config_id"] == config_of(loaded[loaded["target_epsilon"] == 3.0], FIXED)]
    assert at_one["config_id"].iloc[0] not in set(default["config_id"])  # the target ε defines a configuration
    assert at_one["sweep_id"].iloc[0] == default["sweep_id"].iloc[0]  # but the ε sweep joins them in one line
    files = write_report(results, tmp_path / "report")
    for name in ("accuracy_png", "epsilon_png", "tradeoff_png"):
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_without_summary_is_read_from_config_yaml_or_its_row(results):
    before = load_results(results).set_index("run_dir")["config_id"]
    first, second = sorted((results / "runs").glob("adaptive-seed*"))
    config = json.loads((first / "summary.json").read_text())["config"]
    (first / "summary.json").unlink()
    (first / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    (second / "summary.json").unlink()  # neither file: the row's columns stand in for the config
    after = load_results(results).set_index("run_dir")["config_id"]
    assert after[str(first)] == before[str(first)]
    assert after[str(second)] != before[str(second)]
    assert len(leaderboard(load_results(results))) == 8
