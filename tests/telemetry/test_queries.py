"""The benchmark queries run over a directory of tables and return the published answers' columns."""

from __future__ import annotations

import pandas as pd
import pytest

from dpbench.telemetry.benchmark_queries import BENCHMARK, QUERIES
from dpbench.telemetry.query_runner import read_results, run_queries, write_results

# Column headers of the published answers (server_exploration_1 is not published; capstone's columns).
PUBLISHED_COLUMNS = {
    "ChassisAgg": ["chassistype", "number_of_systems", "avg_psys_rap_watts", "avg_pkg_c0", "avg_freq_mhz",
                   "avg_temp_centigrade"],
    "XeonGeo": ["processor_class", "os", "number_of_systems", "avg_bytes_received", "avg_bytes_sent"],
    "PowerGeo": ["countryname_normalized", "number_of_systems", "avg_pkg_power_consumed"],
    "BatteryGeo": ["country", "number_of_systems", "avg_number_of_dc_powerons", "avg_duration"],
    "BatteryDemo": ["marketcodename", "cpugen", "number_of_systems", "avg_duration_mins_on_battery"],
    "RamHist": ["ram_gb", "count(DISTINCT guid)", "avg_percentage_used"],
    "BrowserHist": ["browser", "percent_systems", "percent_instances", "percent_duration"],
    "BrowserRank": ["country", "browser"],
    "SleepPivot": ["marketcodename", "cpugen", "number_of_systems", "avg_on_time", "avg_off_time",
                   "avg_modern_sleep_time", "avg_sleep_time", "avg_total_time", "avg_pcnt_on_time",
                   "avg_pcnt_off_time", "avg_pcnt_mods_time", "avg_pcnt_sleep_time"],
    "NetAsym": ["guid", "nrs", "received_bytes", "sent_bytes", "chassistype", "vendor", "model", "ram", "os",
                "number_of_cores", "processornumber", "cpucode", "cpuname"],
}


@pytest.fixture(scope="module")
def answers(small_corpus) -> dict[str, pd.DataFrame]:
    return run_queries(small_corpus[0])


def test_every_query_returns_the_published_columns(answers):
    assert set(answers) == {q.name for q in BENCHMARK}
    for name, columns in PUBLISHED_COLUMNS.items():
        assert list(answers[name].columns) == columns, name
    persona = answers["PersonaPivot"]
    assert list(persona.columns[:3]) == ["persona", "number_of_systems", "days"]
    assert len(persona.columns) == 31


def test_answers_have_rows_and_plausible_values(answers):
    browsers = answers["BrowserHist"].set_index("browser")
    assert set(browsers.index) == {"chrome", "edge", "firefox"}
    assert browsers["percent_instances"].sum() == pytest.approx(100, abs=0.05)
    assert browsers.loc["chrome", "percent_systems"] > browsers.loc["firefox", "percent_systems"]
    assert answers["RamHist"]["avg_percentage_used"].between(0, 100).all()
    assert len(answers["BrowserRank"]) >= 40
    pcnt = answers["SleepPivot"][["avg_pcnt_on_time", "avg_pcnt_off_time", "avg_pcnt_mods_time",
                                  "avg_pcnt_sleep_time"]].sum(axis=1)
    assert pcnt.between(99.9, 100.1).all()
    net = answers["NetAsym"]
    assert (net["sent_bytes"] > net["received_bytes"]).all() and (net["nrs"] > 720).all()


def test_halves_partition_the_devices(small_corpus):
    corpus = small_corpus[0]
    query = (QUERIES["XeonGeo"],)
    full = run_queries(corpus, query)["XeonGeo"]["number_of_systems"].sum()
    halves = [run_queries(corpus, query, half=h)["XeonGeo"]["number_of_systems"].sum() for h in (0, 1)]
    assert sum(halves) == full
    assert min(halves) > 0.4 * full


def test_written_answers_read_back_under_published_names(answers, tmp_path):
    paths = write_results(answers, tmp_path)
    assert tmp_path / "Xeon_network_consumption.csv" in paths
    back = read_results(tmp_path)
    pd.testing.assert_frame_equal(back["BrowserHist"], answers["BrowserHist"], check_dtype=False)
