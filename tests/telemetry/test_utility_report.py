"""summary.json["utility"]: value-only counts and the margins over the reference points, from hand-made scores."""

from __future__ import annotations

import json

import pytest

from dpbench.telemetry.baselines import BASELINE, HALVES
from dpbench.telemetry.scoring import MetricScore, QueryScore
from dpbench.telemetry.synthesis import format_reference_points, scores_frame, utility_metrics


def _query(name: str, passes: list[bool], about_values: list[bool]) -> QueryScore:
    return QueryScore(name, "aggregate", [MetricScore(f"m{i}", "x", 0.0 if ok else float("inf"), 0.5, False,
                                                      about_values=v)
                                          for i, (ok, v) in enumerate(zip(passes, about_values))])


def test_utility_has_value_only_counts_and_margins_over_both_reference_points():
    scores = [_query("a", [True, True, False, False], [False, False, True, True]),   # 2/4 pass; values 0/2
              _query("b", [False, True, True], [False, True, True])]                 # 2/3 pass; values 2/2
    baseline = [_query("a", [True, True, False, False], [False, False, True, True]),
                _query("b", [True, False, False], [False, True, True])]              # values 0/2
    halves = [_query("a", [True, True, True, True], [False, False, True, True]),
              _query("b", [True, True, True], [False, True, True])]
    utility = utility_metrics(scores, {BASELINE: baseline, HALVES: halves})
    assert (utility["queries_passed"], utility["value_queries_passed"], utility["value_queries_evaluable"]) == (2, 1, 2)
    assert utility["mean_score"] == pytest.approx((2 / 4 + 2 / 3) / 2)
    assert utility["value_mean_score"] == pytest.approx(0.5)
    assert utility["per_query"]["a"]["value_passed"] is False and utility["per_query"]["b"]["value_score"] == 1.0
    assert utility["per_query"]["a"]["value_metrics"] == ["m2:x", "m3:x"]
    assert utility["per_query"]["a"]["metrics"]["m2:x"] is None             # an infinite error is stored as null
    points = utility["reference_points"]
    assert points[BASELINE]["value_queries_passed"] == 0 and points[BASELINE]["queries_passed"] == 1
    assert points[BASELINE]["margin"] == pytest.approx({"queries_passed": 1, "mean_score": (2 / 3 - 1 / 3) / 2,
                                                         "value_queries_passed": 1, "value_mean_score": 0.5})
    assert points[HALVES]["margin"] == pytest.approx({"queries_passed": 0, "mean_score": (2 / 4 + 2 / 3) / 2 - 1,
                                                       "value_queries_passed": -1, "value_mean_score": -0.5})
    json.dumps(utility, allow_nan=False)   # summary.json holds no NaN or infinity


def test_reference_points_print_as_one_line_each():
    scores = [_query("a", [True, True], [False, True])]
    utility = utility_metrics(scores, {BASELINE: [_query("a", [True, False], [False, True])]})
    assert format_reference_points(utility) == ("keys_and_counts: 1 of 1 pass (values 0 of 1); margin +0 queries, "
                                                "+0.500 mean score, on values +1 queries, +1.000")
    assert list(scores_frame(utility).columns) == ["query", "passed", "score", "value_passed", "value_score", "error"]
