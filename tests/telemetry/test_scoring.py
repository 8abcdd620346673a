"""The scoring rules on hand-made answers, computed independently of the code under test."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dpbench.telemetry.baselines import trivial_baseline_scores
from dpbench.telemetry.scoring import MetricScore, QueryScore, relative_error, score_query, total_variation
from dpbench.telemetry.workload import QUERIES


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
    assert metric.value == pytest.approx(2 / 4)   # B (tie kept) and C match; A wrong; D missing
    assert metric.passed


def test_row_level():
    reference = pd.DataFrame({"guid": list("abcd"), "nrs": [1000, 2000, 3000, 4000], "received_bytes": [1.0] * 4,
                              "sent_bytes": [2.0] * 4, "chassistype": ["Notebook"] * 4, "vendor": ["HP"] * 4,
                              "os": ["Win10", "Win10", "Win11", "Win11"]})
    candidate = reference.iloc[:2]
    metrics = {m.column: m for m in score_query(QUERIES["NetAsym"], reference, candidate).metrics}
    assert metrics["row_count"].value == pytest.approx(0.5) and metrics["row_count"].passed
    assert metrics["os"].value == pytest.approx(0.5) and not metrics["os"].passed
    assert metrics["mean_nrs"].value == pytest.approx(0.4) and metrics["mean_nrs"].passed   # 1500 vs 2500


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


def test_trivial_aggregate_baseline_misses_between_group_structure():
    (score,) = trivial_baseline_scores({"BatteryGeo": REFERENCE}, (QUERIES["BatteryGeo"],))
    values = {m.column: m.value for m in score.metrics}
    assert values["group_keys"] == 1.0
    # mean 250 against 100..400: errors 1.5, .25, .167, .375, median .3125
    assert values["avg_duration"] == pytest.approx(0.3125)
    assert not score.metrics[-1].passed


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
