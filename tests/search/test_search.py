"""A private search end to end on digits: the whole search spends the target with tuning included,
each trial stays under the reference curve, the best trial is chosen by its noised validation score
only, and a search launched again keeps its plan (K and the trials are never re-drawn) and its finished
trials."""

import json

import pytest

from dpbench.search.__main__ import main
from dpbench.search.plan import SearchPlan

SEED_WITH_TWO_TRIALS = 5  # tune.seed=5 draws K = 2 from a geometric law of mean 2


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    results = tmp_path_factory.mktemp("search")
    overrides = [
        f"paths.results={results}", "train.epochs=1", "tune.trials_mean=2", f"tune.seed={SEED_WITH_TWO_TRIALS}",
        "progress=false",
    ]
    assert main(overrides) == 0
    (directory,) = (results / "searches").iterdir()
    return overrides, directory


@pytest.mark.slow
def test_the_search_spends_the_target_with_tuning_included(search):
    _, directory = search
    result = json.loads((directory / "result.json").read_text())["released"]
    assert 0.99 * 3.0 <= result["epsilon_search"] <= 3.0
    assert result["epsilon_trial"] < result["epsilon_search"]


def test_the_best_trial_is_the_best_noised_validation_score(search):
    _, directory = search
    plan = SearchPlan.load(directory)
    assert plan.count == 2
    summaries = [json.loads(p.read_text()) for p in directory.glob("runs/*/summary.json")]
    assert sorted(s["trial"] for s in summaries) == ["t0", "t1"]
    assert all(s["search"]["within_reference_curve"] for s in summaries)
    best = max(summaries, key=lambda s: s["validation_score"])
    assert json.loads((directory / "result.json").read_text())["released"]["trial"] == best["trial"]


@pytest.mark.slow
def test_a_relaunched_search_keeps_its_plan_and_finished_trials(search):
    overrides, directory = search
    plan = (directory / "search.json").read_text()
    finished = {p: p.stat().st_mtime for p in directory.glob("runs/*/summary.json")}
    assert main(overrides) == 0
    assert (directory / "search.json").read_text() == plan
    assert {p: p.stat().st_mtime for p in directory.glob("runs/*/summary.json")} == finished
