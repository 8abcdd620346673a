"""The scoring rules on hand-made answers, computed independently of the code under test."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dpbench.telemetry.baselines import margins, trivial_baseline_scores
from dpbench.telemetry.benchmark_queries import QUERIES
from dpbench.telemetry.scoring import (
    EMPTY_REFERENCE,
    Headline,
    MetricScore,
    QueryScore,
    relative_error,
    score_answers,
    score_query,
    total_variation,
)


def _sleepless_battery(rows):
    return pd.DataFrame(rows, columns=["country", "number_of_systems", "avg_number_of_dc_powerons", "avg_duration"])


REFERENCE = _sleepless_battery([
    ("A", 100, 2.0, 100.0),
    ("B", 200, 3.0, 200.0),
    ("C", 300, 4.0, 300.0),
    ("D", 400, 5.0, 400.0),
])


def test_measures():
    assert relative_error(100, 120) == pytest.approx(0.2)
    assert relative_error(0, 0) == 0 and math.isinf(relative_error(0, 1))
    assert total_variation([1, 1, 2], [2, 1, 1]) == pytest.approx(0.25)


def test_aggregate_passes_with_close_values():
    candidate = _sleepless_battery([
        ("A", 110, 2.1, 90.0),
        ("B", 190, 3.3, 260.0),   # duration off by 30%
        ("C", 330, 4.0, 310.0),
        ("E", 50, 1.0, 10.0),     # extra group
    ])
    score = score_query(QUERIES["BatteryGeo"], REFERENCE, candidate)
    values = {m.column: m.value for m in score.metrics}
    assert values["group_keys"] == pytest.approx(3 / 5)           # {A,B,C} of {A,B,C,D,E}
    assert values["number_of_systems"] == pytest.approx(0.1)      # median of 0.1, 0.05, 0.1
    assert values["avg_number_of_dc_powerons"] == pytest.approx(0.05)  # median of 0.05, 0.1, 0
    assert values["avg_duration"] == pytest.approx(0.1)           # median of 0.1, 0.3, 0.0333
    assert score.n_passed == 4 and score.passed


def test_aggregate_fails_with_wrong_groups_and_values():
    candidate = _sleepless_battery([
        ("A", 300, 4.0, 30.0),
        ("X", 100, 2.0, 100.0),
        ("Y", 100, 2.0, 100.0),
        ("Z", 100, 2.0, 100.0),
    ])
    score = score_query(QUERIES["BatteryGeo"], REFERENCE, candidate)
    assert [m.passed for m in score.metrics] == [False, False, False, False]
    assert score.score == 0 and not score.passed


def test_null_reference_values_are_skipped():
    reference = REFERENCE.assign(avg_duration=[None, 200.0, None, None])
    candidate = REFERENCE.assign(avg_duration=[5.0, 210.0, 5.0, 5.0])
    metrics = {m.column: m for m in score_query(QUERIES["BatteryGeo"], reference, candidate).metrics}
    assert metrics["avg_duration"].value == pytest.approx(0.05)
    assert metrics["avg_duration"].detail == "1 groups compared"


def test_histogram_keys_match_numerically():
    reference = pd.DataFrame({"ram_gb": [4.0, 8.0, 16.0], "count(DISTINCT guid)": [10, 30, 60],
                              "avg_percentage_used": [70.0, 60.0, 50.0]})
    candidate = pd.DataFrame({"ram_gb": [4, 8, 32], "count(DISTINCT guid)": [10, 30, 60],
                              "avg_percentage_used": [70.0, 90.0, 50.0]})
    metrics = score_query(QUERIES["RamHist"], reference, candidate).metrics
    assert metrics[0].value == pytest.approx(0.6) and not metrics[0].passed   # 16 GB vs 32 GB bins
    assert metrics[1].value == pytest.approx(0.25) and metrics[1].passed      # median of 0 and 0.5


def test_distribution_normalises_each_share_column():
    reference = pd.DataFrame({"browser": ["chrome", "edge", "firefox"], "percent_systems": [80.0, 50.0, 20.0],
                              "percent_instances": [80.0, 10.0, 10.0], "percent_duration": [80.0, 10.0, 10.0]})
    candidate = reference.assign(percent_systems=[160.0, 100.0, 40.0], percent_instances=[40.0, 50.0, 10.0])
    metrics = {m.column: m for m in score_query(QUERIES["BrowserHist"], reference, candidate).metrics}
    assert metrics["percent_systems"].value == pytest.approx(0.0)
    assert metrics["percent_instances"].value == pytest.approx(0.4) and not metrics["percent_instances"].passed
    assert metrics["percent_duration"].passed


def test_categorical_ranking_keeps_ties_and_counts_missing_keys():
    reference = pd.DataFrame({"country": ["A", "B", "C", "D"], "browser": ["chrome", "edge", "chrome", "chrome"]})
    candidate = pd.DataFrame({"country": ["A", "B", "B", "C"], "browser": ["edge", "chrome", "edge", "chrome"]})
    (metric,) = score_query(QUERIES["BrowserRank"], reference, candidate).metrics
    assert metric.value == pytest.approx(1.5 / 4)   # C matches, B half (a 2-way tie); A wrong; D missing
    assert not metric.passed


def test_a_candidate_that_ties_every_item_does_not_match_every_key():
    reference = pd.DataFrame({"country": ["A", "B"], "browser": ["chrome", "edge"]})
    all_tied = pd.DataFrame({"country": ["A"] * 3 + ["B"] * 3, "browser": ["chrome", "edge", "firefox"] * 2})
    (metric,) = score_query(QUERIES["BrowserRank"], reference, all_tied).metrics
    assert metric.value == pytest.approx(1 / 3) and not metric.passed
    both_tied = pd.DataFrame({"country": ["A", "A", "B"], "browser": ["chrome", "edge", "edge"]})
    reference_tie = pd.DataFrame({"country": ["A", "A", "B"], "browser": ["chrome", "edge", "edge"]})
    (metric,) = score_query(QUERIES["BrowserRank"], reference_tie, both_tied).metrics
    assert metric.value == pytest.approx(1.0)   # the same tie is a match


def _net_rows(n_rows, nrs, os):
    return pd.DataFrame({"guid": [f"g{i}" for i in range(n_rows)], "nrs": nrs, "received_bytes": [1.0] * n_rows,
                         "sent_bytes": [2.0] * n_rows, "chassistype": ["Notebook"] * n_rows, "vendor": ["HP"] * n_rows,
                         "os": os, "ram": [16384] * n_rows, "number_of_cores": [8] * n_rows})


def test_row_level():
    reference = _net_rows(4, [1000, 2000, 3000, 4000], ["Win10", "Win10", "Win11", "Win11"])
    candidate = reference.iloc[:2]
    metrics = {m.column: m for m in score_query(QUERIES["NetAsym"], reference, candidate).metrics}
    assert metrics["row_count"].value == pytest.approx(0.5) and not metrics["row_count"].passed
    assert metrics["os"].value == pytest.approx(0.5) and not metrics["os"].passed
    assert metrics["mean_nrs"].value == pytest.approx(0.4) and not metrics["mean_nrs"].passed   # 1500 vs 2500
    assert metrics["mean_received_bytes"].passed and metrics["vendor"].passed


def test_row_level_uses_the_specs_relative_error_and_distribution_thresholds():
    """The SPEC has no row-level rule; NetAsym takes its relative-error (0.25) and TVD (0.15) thresholds."""
    reference = _net_rows(20, [1000] * 20, ["Win10"] * 10 + ["Win11"] * 10)
    # 15 rows (row count off 25%), 13 Win10 of 15 (TVD 13/15 - 1/2 = 0.367), nrs mean 1240 (24% off)
    candidate = _net_rows(15, [1240] * 15, ["Win10"] * 13 + ["Win11"] * 2)
    metrics = {m.column: m for m in score_query(QUERIES["NetAsym"], reference, candidate).metrics}
    assert metrics["row_count"].value == pytest.approx(0.25) and metrics["row_count"].passed
    assert metrics["os"].value == pytest.approx(13 / 15 - 0.5) and not metrics["os"].passed
    assert metrics["mean_nrs"].value == pytest.approx(0.24) and metrics["mean_nrs"].passed
    # 14 rows (30% off), 9 Win10 of 14 (TVD 9/14 - 1/2 = 0.143), nrs mean 1300 (30% off)
    candidate = _net_rows(14, [1300] * 14, ["Win10"] * 9 + ["Win11"] * 5)
    metrics = {m.column: m for m in score_query(QUERIES["NetAsym"], reference, candidate).metrics}
    assert not metrics["row_count"].passed and not metrics["mean_nrs"].passed
    assert metrics["os"].value == pytest.approx(9 / 14 - 0.5) and metrics["os"].passed
    # value metrics: the 5 descriptors the SPEC names and 3 means; the row count is not a value
    score = score_query(QUERIES["NetAsym"], reference, candidate)
    assert [m.column for m in score.metrics if not m.about_values] == ["row_count"]
    assert {m.column for m in score.metrics} >= {"os", "chassistype", "vendor", "ram", "number_of_cores"}
    assert score.value_score == pytest.approx(7 / 8)   # everything but mean_nrs


def test_a_group_the_candidate_leaves_null_is_a_miss_not_skipped():
    """A reference value with no candidate value (e.g. NaN from a zero total) is an infinite error."""
    reference = REFERENCE.assign(avg_duration=[100.0, 200.0, 300.0, None])
    candidate = REFERENCE.assign(avg_duration=[None, None, 310.0, 5.0])
    metrics = {m.column: m for m in score_query(QUERIES["BatteryGeo"], reference, candidate).metrics}
    # D is skipped (no reference value); A and B are misses; C is 1/30 off: median of inf, inf, 0.033
    assert math.isinf(metrics["avg_duration"].value) and not metrics["avg_duration"].passed
    assert metrics["avg_duration"].detail == "3 groups compared"
    candidate = REFERENCE.assign(avg_duration=[None, 200.0, 310.0, None])   # one miss of three: median 1/30
    metrics = {m.column: m for m in score_query(QUERIES["BatteryGeo"], reference, candidate).metrics}
    assert metrics["avg_duration"].value == pytest.approx(1 / 30)


def test_missing_answers_are_reported_and_bad_columns_raise():
    assert "no reference answer" in score_query(QUERIES["NetAsym"], None, REFERENCE).error
    assert "no candidate answer" in score_query(QUERIES["BatteryGeo"], REFERENCE, None).error
    with pytest.raises(ValueError, match=r"candidate answer lacks columns \['avg_duration'\]"):
        score_query(QUERIES["BatteryGeo"], REFERENCE, REFERENCE.drop(columns="avg_duration"))


def test_chrome_everywhere_baseline():
    countries = [f"C{i}" for i in range(51)]
    reference = pd.DataFrame({"country": countries, "browser": ["edge"] * 3 + ["chrome"] * 48})
    (score,) = trivial_baseline_scores({"BrowserRank": reference}, (QUERIES["BrowserRank"],))
    assert score.metrics[0].value == pytest.approx(48 / 51)
    assert score.metrics[0].detail.endswith("0 of the 3 whose top is not 'chrome'")


def test_ranking_detail_counts_the_keys_whose_top_is_not_the_common_one():
    reference = pd.DataFrame({"country": list("ABCDE"), "browser": ["edge", "firefox", "chrome", "chrome", "chrome"]})
    candidate = pd.DataFrame({"country": list("ABCDE"), "browser": ["edge", "chrome", "chrome", "chrome", "edge"]})
    (metric,) = score_query(QUERIES["BrowserRank"], reference, candidate).metrics
    assert metric.value == pytest.approx(3 / 5)
    assert metric.detail == "3 of 5 reference country values matched; 1 of the 2 whose top is not 'chrome'"


def test_trivial_aggregate_baseline_keeps_keys_and_counts_and_misses_between_group_structure():
    (score,) = trivial_baseline_scores({"BatteryGeo": REFERENCE}, (QUERIES["BatteryGeo"],))
    values = {m.column: m.value for m in score.metrics}
    assert values["group_keys"] == 1.0 and values["number_of_systems"] == 0.0   # counts kept exactly
    # mean 250 against 100..400: errors 1.5, .25, .167, .375, median .3125
    assert values["avg_duration"] == pytest.approx(0.3125)
    # powerons mean 3.5 against 2..5: errors .75, .1667, .125, .3, median .2333
    assert values["avg_number_of_dc_powerons"] == pytest.approx(0.7 / 3)
    assert score.passed and score.n_passed == 3             # keys, counts and powerons pass
    assert score.value_score == pytest.approx(1 / 2) and score.value_passed


def test_trivial_row_level_baseline_keeps_rows_means_and_most_common_descriptor():
    reference = _net_rows(4, [1000, 2000, 3000, 6000], ["Win10", "Win10", "Win10", "Win11"])
    (score,) = trivial_baseline_scores({"NetAsym": reference}, (QUERIES["NetAsym"],))
    metrics = {m.column: m.value for m in score.metrics}
    assert metrics["row_count"] == 0 and metrics["mean_nrs"] == pytest.approx(0)
    assert metrics["os"] == pytest.approx(0.25)   # all Win10 against 3 of 4


def test_value_only_scoring_leaves_out_keys_and_counts():
    spec = QUERIES["PersonaPivot"]
    assert spec.counts == ("number_of_systems", "days")
    reference = pd.DataFrame([{"persona": p, "number_of_systems": 100, "days": 1000,
                               **{c: 10.0 for c in spec.metrics[2:]}} for p in "AB"])
    # keys and counts right; 13 of 28 categories right, 15 off by half
    candidate = reference.copy()
    candidate[list(spec.metrics[2 + 13:])] = 15.0
    score = score_query(spec, reference, candidate)
    assert score.n_metrics == 31 and len(score.value_metrics) == 28
    assert score.n_passed == 16 and score.passed                       # 16 of 31
    assert score.value_score == pytest.approx(13 / 28) and not score.value_passed


def test_headline_and_margins_count_values_only_beside_all_metrics():
    def query(name, passes, about_values):
        return QueryScore(name, "aggregate", [MetricScore(f"m{i}", "x", 0.0 if ok else 1.0, 0.5, False,
                                                          about_values=v)
                                              for i, (ok, v) in enumerate(zip(passes, about_values))])
    candidate = [query("a", [True, True, False], [False, True, True]),     # 2/3 pass; values 1/2 pass
                 query("b", [True, False, False], [False, False, True]),   # 1/3 fail; values 0/1 fail
                 QueryScore("c", "aggregate", error="no reference")]
    head = Headline.of(candidate)
    assert (head.queries_passed, head.queries_evaluable, head.value_queries_passed, head.value_queries_evaluable) == (
        1, 2, 1, 2)
    assert head.mean_score == pytest.approx(0.5) and head.value_mean_score == pytest.approx(0.25)
    baseline = [query("a", [True, False, False], [False, True, True]), query("b", [True, True, True], [False] * 3)]
    (entry,) = margins(candidate, {"keys_and_counts": baseline}).values()
    # baseline: a 1/3 (values 0/2), b 3/3 with no value metric (not value-evaluable)
    assert entry["headline"]["value_queries_evaluable"] == 1 and entry["headline"]["value_mean_score"] == 0
    assert entry["margin"] == pytest.approx({"queries_passed": 0, "mean_score": 0.5 - 2 / 3,
                                             "value_queries_passed": 1, "value_mean_score": 0.25})
    assert "on values only 1 of 2, mean 0.250" in str(head)


@pytest.mark.parametrize("n_metrics, n_passed, published", [
    # (metrics, metrics passed, query passed) as published by the capstone (../shared/telemetry/baselines/)
    (4, 2, True),     # Xeon_network_consumption, real halves
    (6, 3, True),     # avg_platform_power_c0_freq_temp_by_chassis, real halves
    (3, 1, False),    # pkg_power_by_country, real halves
    (11, 7, True),    # on_off_mods_sleep_summary_by_cpu_marketcodename_gen, per-table
    (11, 3, False),   # on_off_mods_sleep_summary_by_cpu_marketcodename_gen, MST
    (31, 13, False),  # persona_web_cat_usage_analysis, per-table
    (31, 22, True),   # persona_web_cat_usage_analysis, real halves
])
def test_query_pass_rule_matches_the_published_scores(n_metrics, n_passed, published):
    score = QueryScore("q", "aggregate", [MetricScore(f"m{i}", "x", float(i >= n_passed), 0.5, False)
                                          for i in range(n_metrics)])
    assert score.n_passed == n_passed and score.passed == published


def _sleep_answer(groups, systems, value):
    metrics = QUERIES["SleepPivot"].metrics[1:]
    return pd.DataFrame([{"marketcodename": g, "cpugen": f"{g} gen", "number_of_systems": systems,
                          **{m: value for m in metrics}} for g in groups])


def test_key_overlap_is_one_metric_among_the_others():
    """SPEC: a query passes when at least half of its metrics pass; group-key Jaccard is one of them."""
    reference = _sleep_answer("ABCDEFGHI", 200, 100.0)
    shifted = _sleep_answer("ABCDWXYZV", 210, 105.0)   # 4 of 14 groups shared, values 5% off
    score = score_query(QUERIES["SleepPivot"], reference, shifted)
    keys, *values = score.metrics
    assert keys.value == pytest.approx(4 / 14) and not keys.passed
    assert all(m.passed for m in values) and score.n_passed == 10 and score.passed
    wrong = _sleep_answer("ABCDEFGHI", 400, 200.0)     # every group, every value 100% off
    score = score_query(QUERIES["SleepPivot"], reference, wrong)
    assert score.n_passed == 1 and not score.passed


def test_an_empty_reference_answer_is_not_evaluable_for_candidate_and_baseline():
    empty = REFERENCE.iloc[:0]
    (score,) = score_answers({"BatteryGeo": empty}, {"BatteryGeo": empty}, (QUERIES["BatteryGeo"],))
    assert score.error == EMPTY_REFERENCE and not score.passed
    (baseline,) = trivial_baseline_scores({"BatteryGeo": empty}, (QUERIES["BatteryGeo"],))
    assert baseline.error == EMPTY_REFERENCE


def test_text_keys_match_up_to_case_and_surrounding_spaces():
    """Synthetic output spells groups as the catalogue does; a real corpus may spell them otherwise."""
    reference = _sleepless_battery([(" united states ", 100, 2.0, 100.0), ("GERMANY", 200, 3.0, 200.0)])
    candidate = _sleepless_battery([("United States", 100, 2.0, 100.0), ("Germany", 200, 3.0, 200.0)])
    values = {m.column: m.value for m in score_query(QUERIES["BatteryGeo"], reference, candidate).metrics}
    assert values == {"group_keys": 1.0, "number_of_systems": 0.0, "avg_number_of_dc_powerons": 0.0,
                      "avg_duration": 0.0}
    twice = _sleepless_battery([("Germany", 1, 1.0, 1.0), ("germany ", 2, 1.0, 1.0)])
    with pytest.raises(ValueError, match="differ only in case or surrounding spaces"):
        score_query(QUERIES["BatteryGeo"], twice, candidate)
