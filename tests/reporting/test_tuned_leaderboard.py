"""Tuned results in the leaderboard, from rows written as a search writes them (no training): a private search's
released model is its own row with the whole search's ε (never the per-trial ε) and K's law (K itself only in the
operator's view); it is never averaged with untuned runs or with another search's result, and compared only with a
baseline tuned the same way. A public-proxy row shows what it was tuned on, and a search's trial rows are never
read as results."""

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from dpbench.report import write_report
from dpbench.reporting.leaderboard import compare_to_baseline, confounders, leaderboard
from dpbench.reporting.results_table import NoResultsError, load_results
from dpbench.reporting.tuned_pipelines import compare_pipelines, pipelines
from dpbench.search.tuning_record import PRIVATE_SEARCH, PUBLIC_PROXY, private_search_row, public_proxy_record

FIXED = {"_target_": "mechanisms.fixed.FixedClipping", "name": "fixed", "max_grad_norm": 1.0}
ADAPTIVE = {"_target_": "mechanisms.adaptive.AdaptiveClipping", "name": "adaptive", "max_grad_norm": 1.0,
            "target_quantile": 0.5, "learning_rate": 0.2}
BASE = {
    "seed": 0, "paths": {"results": "results"},
    "dataset": {"_target_": "dpbench.data.load_dataset", "name": "digits"},
    "model": {"_target_": "dpbench.models.DigitsCNN"},
    "train": {"epochs": 30, "lr": 0.1, "batch_size": 256, "momentum": 0.9},
    "privacy": {"target_epsilon": 3.0, "target_delta": 1e-5},
}
PRIVATE_TUNE = {"trial": "t0", "space": "fixed", "trials_mean": 2, "trials_shape": 1, "validation_fraction": 0.1,
                "score_noise": 10, "split_seed": 0, "reference_batch_size": 256, "reference_epochs": 30, "seed": None}
TOTAL, PER_TRIAL = 2.987, 2.021  # a search's ε, tuning included, and the ε of its selected trial alone
SEARCHED = {"fixed": ["train.lr", "train.max_grad_norm"],
            "adaptive": ["train.lr", "mechanism.max_grad_norm", "mechanism.target_quantile", "train.momentum"]}


def write_run(results: Path, name: str, mechanism: dict, accuracy: float, seed: int = 0, tune: dict | None = None,
              train: dict | None = None, table: Path | None = None, **record) -> dict:
    """A run's summary.json and its results row (``record`` adds summary entries); returns the row."""
    config = copy.deepcopy(BASE) | {"seed": seed, "mechanism": copy.deepcopy(mechanism)}
    config["train"] |= train or {}
    if tune is not None:
        config["tune"] = tune
    run_dir = results / "runs" / name
    run_dir.mkdir(parents=True)
    summary = {
        "status": "finished", "dataset": "digits", "mechanism": mechanism["name"], "seed": seed,
        "mechanism_class": mechanism["_target_"], "contract": "structured", "final_accuracy": accuracy,
        "target_epsilon": 3.0, "epsilon": PER_TRIAL if tune and "trials_mean" in tune else 2.99,
        "verdict": "VERIFIED", "wall_seconds": 10.0, "run_dir": str(run_dir), "config": config, **record,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    row = {key: value for key, value in summary.items() if key != "config"}
    with open(table or results / "results.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def write_search(results: Path, search: str, mechanism: dict, accuracy: float, chosen: dict, trials_run: int = 3,
                 total: float = TOTAL, pipeline: str | None = None, unreleased: tuple[float, ...] = (),
                 searched: list[str] | None = None):
    """A private search's selected trial (its summary, as a trial writes it; ``unreleased``: the accuracies of its
    other trials) and the released row the search appends to the results table (built by the search's own
    function), recording ``pipeline`` as the search's pipeline id and ``searched`` (default: the mechanism's
    space) as the keys it chose; a key of ``chosen`` that is not searched is a setting the search held fixed."""
    trial = {"trial": "t1", "validation_score": accuracy - 0.05, "epsilon_search": total,
             "search": {"trials_mean": 2, "trials_shape": 1, "reference_noise_multiplier": 5.4,
                        "within_reference_curve": True, "validation_size": 144, "score_noise": 10}}
    tune = PRIVATE_TUNE | {"trial": "t1", "space": mechanism["name"]}
    mechanism = mechanism | {key.split(".", 1)[1]: value for key, value in chosen.items() if key.startswith("mech")}
    train = {key.split(".", 1)[1]: value for key, value in chosen.items() if key.startswith("train.")}
    search_dir = results / "searches" / search
    search_dir.mkdir(parents=True)
    row = write_run(search_dir, "t1", mechanism, accuracy, tune=tune, train=train, **trial)
    for index, other in enumerate(unreleased, start=2):  # trials the search did not select
        write_run(search_dir, f"t{index}", mechanism, other, tune=tune | {"trial": f"t{index}"}, train=train,
                  **trial | {"trial": f"t{index}"})
    searched = SEARCHED[mechanism["name"]] if searched is None else searched
    released = private_search_row(row, search, searched, trials_run, trials_run, pipeline)
    with open(results / "results.jsonl", "a") as handle:
        handle.write(json.dumps(released) + "\n")


@pytest.fixture
def results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for seed, accuracy in enumerate((0.90, 0.92)):  # untuned runs at the preset
        write_run(results, f"fixed-seed{seed}", FIXED, accuracy, seed=seed)
        write_run(results, f"adaptive-seed{seed}", ADAPTIVE, accuracy - 0.05, seed=seed)
    # two searches of fixed that happen to choose the same values: two results, never one row
    write_search(results, "mechanism=fixed,seed=0", FIXED, 0.93, {"train.lr": 0.1, "mechanism.max_grad_norm": 1.0})
    write_search(results, "mechanism=fixed,seed=1", FIXED, 0.95, {"train.lr": 0.1, "mechanism.max_grad_norm": 1.0})
    write_search(results, "mechanism=adaptive", ADAPTIVE, 0.96,
                 {"train.lr": 0.3, "mechanism.target_quantile": 0.7, "train.momentum": 0.0})
    return results


def row_of(board: pd.DataFrame, **match) -> pd.Series:
    rows = board[(board[list(match)] == pd.Series(match)).all(axis=1)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_a_search_result_is_its_own_row_never_averaged(results):
    board = leaderboard(load_results(results))
    tuned = board[board["tuning"] == PRIVATE_SEARCH]
    assert sorted(tuned["accuracy_mean"]) == pytest.approx([0.93, 0.95, 0.96])
    assert set(tuned["n_runs"]) == {1} and tuned["config_id"].nunique() == 3
    untuned = row_of(board, tuning="untuned", mechanism="fixed")
    assert untuned["n_runs"] == 2 and untuned["accuracy_mean"] == pytest.approx(0.91)


def test_a_tuned_row_shows_the_whole_search_epsilon_not_the_trial_epsilon(results, tmp_path):
    board = leaderboard(load_results(results))
    tuned = board[board["tuning"] == PRIVATE_SEARCH]
    assert list(tuned["epsilon_spent"]) == pytest.approx([TOTAL] * 3)
    assert list(tuned["epsilon_trial"]) == pytest.approx([PER_TRIAL] * 3)
    text = write_report(results, tmp_path / "report")["leaderboard_md"].read_text()
    lines = [line for line in text.splitlines() if "| private search on digits |" in line]
    assert len(lines) == 3
    header = next(line for line in text.splitlines() if "ε spent, tuning included" in line).split(" | ")
    for line in lines:
        cells = line.split(" | ")
        assert cells[header.index("ε spent, tuning included")] == f"{TOTAL:.3f}"
        assert cells[header.index("ε per trial")] == f"{PER_TRIAL:.3f}"
        assert cells[header.index("K")] == "secret (geometric, mean 2)"
    assert "ε 3 in total, tuning included: tuned by a private search on digits" in text
    assert "train.lr=0.3" in next(line for line in lines if "| adaptive |" in line)  # the chosen values


def test_k_appears_only_in_the_operator_view(results, tmp_path):
    public = write_report(results, tmp_path / "public")
    assert pd.read_csv(public["leaderboard_csv"])["trials_run"].isna().all()
    operator = write_report(results, tmp_path / "operator", operator_view=True)
    board = pd.read_csv(operator["leaderboard_csv"])
    assert set(board.loc[board["tuning"] == PRIVATE_SEARCH, "trials_run"]) == {3}
    assert "3 (operator only; geometric, mean 2)" in operator["leaderboard_md"].read_text()


def test_tuned_rows_are_compared_only_with_a_baseline_tuned_the_same_way(results):
    loaded = load_results(results)
    comparisons = compare_to_baseline(loaded, resamples=200)
    assert (comparisons["tuning"] == comparisons["baseline_tuning"]).all()
    tuned = comparisons[comparisons["tuning"] == PRIVATE_SEARCH]
    # the tuned adaptive against each tuned fixed: the searched keys (lr, momentum, quantile) may differ
    assert sorted(tuned["difference"]) == pytest.approx([0.96 - 0.95, 0.96 - 0.93])
    untuned = comparisons[comparisons["tuning"] == "untuned"]
    assert list(untuned["difference"]) == pytest.approx([-0.05])


def test_a_tuned_row_without_a_tuned_baseline_is_not_compared(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_run(results, "fixed", FIXED, 0.90)
    write_search(results, "mechanism=adaptive", ADAPTIVE, 0.96, {"train.lr": 0.3})
    assert compare_to_baseline(load_results(results), resamples=200).empty
    text = write_report(results, tmp_path / "report")["leaderboard_md"].read_text()
    assert "an untuned row is never compared with a tuned one" in text
    adaptive = next(line for line in text.splitlines() if "| adaptive |" in line)
    assert adaptive.endswith("| – | – |")


def test_a_public_proxy_row_shows_what_it_was_tuned_on(results, tmp_path):
    record = public_proxy_record("mnist", SEARCHED["fixed"], 8)
    tune = {"trial": None, "tuned_on": "mnist", "space": "fixed", "trials": 8}
    for seed in (0, 1):
        write_run(results, f"proxy-seed{seed}", FIXED, 0.94, seed=seed, tune=tune, train={"lr": 0.2}, **record)
    board = leaderboard(load_results(results))
    proxy = row_of(board, tuning=PUBLIC_PROXY)
    assert proxy["tuned_on"] == "mnist" and proxy["n_runs"] == 2 and proxy["epsilon_spent"] == pytest.approx(2.99)
    text = write_report(results, tmp_path / "report")["leaderboard_md"].read_text()
    assert "tuned on a public proxy (no tuning cost charged to digits)" in text
    line = next(line for line in text.splitlines() if "| public proxy: mnist |" in line)
    assert "| 8 |" in line and "train.lr=0.2" in line


def test_a_search_s_trials_are_never_read_as_results(results):
    loaded = load_results(results)
    from_searches = loaded[loaded["run_dir"].str.contains("/searches/")]
    assert len(loaded) == 4 + 3 and len(from_searches) == 3  # each search's released row, once
    assert (from_searches["tuning"] == PRIVATE_SEARCH).all()
    search = results / "searches" / "mechanism=adaptive"
    with pytest.raises(NoResultsError, match="only the trials of a search"):
        load_results(search)


def test_what_a_search_chose_is_not_a_difference_but_the_mechanism_class_is(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for name, bound in (("a", 0.5), ("b", 2.0)):  # the clipping bound reaches the mechanism through ${train...}
        write_search(results, f"mechanism=fixed,seed={name}", FIXED, 0.9,
                     {"train.lr": 0.1, "train.max_grad_norm": bound, "mechanism.max_grad_norm": bound})
    plugin = FIXED | {"_target_": "my.Class"}  # a plugin recorded under the name fixed
    write_search(results, "mechanism=my.Class", plugin, 0.8, {"train.lr": 0.1, "train.max_grad_norm": 1.0})
    board = leaderboard(load_results(results))
    builtin = board[board["mechanism_class"] == FIXED["_target_"]]
    expected = "mechanism._target_=mechanisms.fixed.FixedClipping, mechanism_class=mechanisms.fixed.FixedClipping"
    assert list(builtin["differs"]) == [expected] * 2
    assert {"train.max_grad_norm=0.5", "train.max_grad_norm=2.0"} <= {
        part for chosen in builtin["chosen"] for part in chosen.split(", ")}
    assert "mechanism_class=my.Class" in row_of(board, mechanism_class="my.Class")["differs"]


def test_a_setting_held_at_different_values_is_a_difference_even_where_another_search_chose_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    chosen = {"train.lr": 0.1, "train.max_grad_norm": 1.0}
    write_search(results, "held=30", FIXED, 0.90, chosen)  # the preset's 30 epochs, held fixed
    write_search(results, "searched", FIXED, 0.91, chosen | {"train.epochs": 20},
                 searched=[*SEARCHED["fixed"], "train.epochs"])  # the epochs chosen by this search
    board = leaderboard(load_results(results))
    assert confounders(load_results(results)) == {("digits", 3.0, PRIVATE_SEARCH): []}  # what a search chose
    assert set(board["differs"]) == {""}
    write_search(results, "held=40", FIXED, 0.92, chosen | {"train.epochs": 40})  # held fixed at another value
    board = leaderboard(load_results(results))
    assert confounders(load_results(results)) == {("digits", 3.0, PRIVATE_SEARCH): ["train.epochs"]}
    assert sorted(board["differs"]) == ["", "train.epochs=30", "train.epochs=40"]  # the search's 20 is "chosen"
    assert "train.epochs=20" in row_of(board, differs="")["chosen"]


def test_nothing_published_tells_which_trial_was_selected(tmp_path):
    """The selected trial's index bounds the secret K from below: it is in no published column, and the config id
    (a hash anyone could recompute for t0, t1, ...) does not depend on it."""
    ids = []
    for index in (1, 7):
        results = tmp_path / f"t{index}"
        results.mkdir()
        write_search(results, "mechanism=fixed", FIXED, 0.9, {"train.lr": 0.1})
        summary = next(results.glob("searches/*/runs/*/summary.json"))
        summary.write_text(summary.read_text().replace('"trial": "t1"', f'"trial": "t{index}"'))
        loaded = load_results(results)
        assert "tune.trial" not in loaded["config"].iloc[0]
        files = write_report(results, tmp_path / f"report{index}")
        assert f"t{index}" not in files["leaderboard_md"].read_text() + files["leaderboard_csv"].read_text()
        ids.append(loaded["config_id"].iloc[0])
    assert ids[0] == ids[1]


def test_a_search_whose_trial_left_the_reference_curve_has_no_bound(tmp_path):
    """A trial outside the search's reference curve (a plugin's verified ledger above the planned one) records an
    infinite search ε: the row says unbounded, never the trial's own finite ε."""
    results = tmp_path / "results"
    results.mkdir()
    write_search(results, "mechanism=fixed", FIXED, 0.9, {"train.lr": 0.1}, total=math.inf)
    text = write_report(results, tmp_path / "report")["leaderboard_md"].read_text()
    line = next(line for line in text.splitlines() if "| private search on digits |" in line)
    assert "| unbounded | 2.021 |" in line


def pipeline_results(tmp_path: Path) -> Path:
    """Three searches each of a fixed and an adaptive pipeline, one search of another fixed pipeline (recorded
    under another id), and a search written before pipelines were recorded."""
    results = tmp_path / "results"
    results.mkdir()
    for seed, accuracy in enumerate((0.90, 0.92, 0.94)):
        write_search(results, f"mechanism=fixed,seed={seed}", FIXED, accuracy, {"train.lr": 0.1 * (seed + 1)},
                     pipeline="fixedpipe", unreleased=(0.4123, 0.8555))
        write_search(results, f"mechanism=adaptive,seed={seed}", ADAPTIVE, accuracy - 0.10 + 0.01 * seed,
                     {"train.lr": 0.3}, pipeline="adaptpipe", unreleased=(0.3321,))
    write_search(results, "mechanism=fixed,epochs=3", FIXED, 0.5, {"train.lr": 0.1}, pipeline="otherpipe")
    write_search(results, "mechanism=fixed,old", FIXED, 0.7, {"train.lr": 0.1})
    return results


def test_searches_of_one_pipeline_are_averaged_and_other_pipelines_never_join(tmp_path):
    table = pipelines(load_results(pipeline_results(tmp_path)))
    fixed = row_of(table, pipeline="fixedpipe")
    assert fixed["n_searches"] == 3 and fixed["accuracy_mean"] == pytest.approx(0.92)
    assert fixed["accuracy_std"] == pytest.approx(0.02)
    assert fixed["epsilon_spent"] == pytest.approx(TOTAL) and fixed["epsilon_trial"] == pytest.approx(PER_TRIAL)
    assert row_of(table, pipeline="otherpipe")["n_searches"] == 1
    assert row_of(table, pipeline="adaptpipe")["accuracy_mean"] == pytest.approx(0.83)
    old = table[~table["pipeline"].isin(["fixedpipe", "adaptpipe", "otherpipe"])]
    assert len(old) == 1 and old.iloc[0]["n_searches"] == 1 and old.iloc[0]["accuracy_mean"] == pytest.approx(0.7)


def test_pipelines_are_compared_over_their_searches(tmp_path):
    comparisons = compare_pipelines(load_results(pipeline_results(tmp_path)), resamples=2000)
    adaptive = comparisons[(comparisons["pipeline"] == "adaptpipe") & (comparisons["baseline_pipeline"] == "fixedpipe")]
    assert len(adaptive) == 1
    row = adaptive.iloc[0]
    assert row["difference"] == pytest.approx(0.83 - 0.92)
    expected = stats.ttest_ind([0.80, 0.83, 0.86], [0.90, 0.92, 0.94], equal_var=False).pvalue
    assert row["welch_p_value"] == pytest.approx(expected)
    assert row["ci_low"] < row["difference"] < row["ci_high"] < 0
    assert (comparisons["mechanism"] != "fixed").all()


def test_a_pipeline_comparisons_interval_does_not_depend_on_the_other_pipelines(tmp_path):
    """Each pair's bootstrap has its own generator: another pipeline's searches (sorting before the others) leave
    every existing comparison's interval as it was."""
    results = pipeline_results(tmp_path)
    before = compare_pipelines(load_results(results), resamples=500).set_index(["pipeline", "baseline_pipeline"])
    for seed in range(2):
        write_search(results, f"mechanism=adaptive,space=narrow,seed={seed}", ADAPTIVE, 0.88 + 0.01 * seed,
                     {"train.lr": 0.2}, pipeline="aapipe")
    after = compare_pipelines(load_results(results), resamples=500).set_index(["pipeline", "baseline_pipeline"])
    assert len(after) > len(before)
    pd.testing.assert_frame_equal(after.loc[before.index], before)


def test_the_trials_spread_is_only_in_the_operator_view(tmp_path):
    results = pipeline_results(tmp_path)
    public = write_report(results, tmp_path / "public")
    text = public["leaderboard_md"].read_text()
    assert "tuned pipelines (mean over independent private searches)" in text
    line = next(line for line in text.splitlines() if "| fixedpipe |" in line)
    assert "92.00 ± 2.00 | 3 |" in line
    published = text + public["pipelines_csv"].read_text() + public["leaderboard_csv"].read_text()
    assert "41.23" not in published and "0.4123" not in published and "operator only" not in published
    operator = write_report(results, tmp_path / "operator", operator_view=True)
    line = next(line for line in operator["leaderboard_md"].read_text().splitlines() if "| fixedpipe |" in line)
    assert "85.55 [41.23, 94.00] (9 trials)" in line
    assert public["pipelines_png"].exists()
    compared = pd.read_csv(public["pipeline_comparisons_csv"])
    assert set(compared["pipeline"]) == {"adaptpipe"} and "fixedpipe" in set(compared["baseline_pipeline"])


def test_a_plugin_pipeline_under_the_baseline_s_name_is_never_the_baseline(tmp_path):
    """Searches of a plugin recorded as ``fixed`` form their own pipeline and are compared against the real
    fixed pipeline, never used as the baseline of another mechanism."""
    results = tmp_path / "results"
    results.mkdir()
    plugin = FIXED | {"_target_": "my.Class"}
    for seed, accuracy in enumerate((0.90, 0.92)):
        write_search(results, f"mechanism=fixed,seed={seed}", FIXED, accuracy, {"train.lr": 0.1}, pipeline="real")
        write_search(results, f"plugin,seed={seed}", plugin, accuracy - 0.5, {"train.lr": 0.1}, pipeline="plugin")
        write_search(results, f"adaptive,seed={seed}", ADAPTIVE, accuracy - 0.1, {"train.lr": 0.3}, pipeline="ad")
    comparisons = compare_pipelines(load_results(results), resamples=200)
    assert set(comparisons["baseline_pipeline"]) == {"real"}
    assert set(comparisons["pipeline"]) == {"plugin", "ad"}
    plugin_row = comparisons[comparisons["pipeline"] == "plugin"].iloc[0]
    assert plugin_row["difference"] == pytest.approx(-0.5)
