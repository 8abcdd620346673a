"""The benchmark queries run over a directory of tables and return the published answers' columns."""

from __future__ import annotations

import duckdb
import numpy as np
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


PUBLISHED_CHASSIS_AGG = """
SELECT a.chassistype, COUNT(DISTINCT a.guid) AS number_of_systems,
    SUM(b.nrs * b.avg_psys_rap_watts) / SUM(b.nrs) AS avg_psys_rap_watts,
    SUM(c.nrs * c.avg_pkg_c0) / SUM(c.nrs) AS avg_pkg_c0,
    SUM(d.nrs * d.avg_avg_freq_mhz) / SUM(d.nrs) AS avg_freq_mhz,
    SUM(e.nrs * e.avg_temp_centigrade) / SUM(e.nrs) AS avg_temp_centigrade
FROM system_sysinfo_unique_normalized a
INNER JOIN system_psys_rap_watts b ON a.guid = b.guid
INNER JOIN system_pkg_C0 c ON a.guid = c.guid
INNER JOIN system_pkg_avg_freq_mhz d ON a.guid = d.guid
INNER JOIN system_pkg_temp_centigrade e ON a.guid = e.guid
GROUP BY a.chassistype ORDER BY a.chassistype
"""
"""ChassisAgg as published: every row of a device in one table joined with every row of it in the others."""


def test_chassis_agg_is_the_published_join_without_its_row_product():
    rng = np.random.default_rng(0)
    con = duckdb.connect()
    guids = [f"g{i}" for i in range(12)]
    sysinfo = pd.DataFrame({"guid": guids + ["g0"], "chassistype": rng.choice(["Notebook", "Desktop"], 12).tolist()
                            + ["Tablet"]})  # g0 twice, under two chassis types
    con.register("system_sysinfo_unique_normalized", sysinfo)
    for table, value in [("system_psys_rap_watts", "avg_psys_rap_watts"), ("system_pkg_C0", "avg_pkg_c0"),
                         ("system_pkg_avg_freq_mhz", "avg_avg_freq_mhz"),
                         ("system_pkg_temp_centigrade", "avg_temp_centigrade")]:
        devices = rng.choice(guids, size=60)  # 1-12 rows per device, some devices absent from a table
        values = rng.lognormal(2.0, 1.0, 60)
        values[rng.random(60) < 0.1] = np.nan  # a value the aggregate skips but whose nrs the weight counts
        con.register(table, pd.DataFrame({"guid": devices, "nrs": rng.integers(1, 500, 60), value: values}))
    published = con.execute(PUBLISHED_CHASSIS_AGG).df()
    ours = con.execute(QUERIES["ChassisAgg"].sql).df()
    assert len(published) >= 2
    pd.testing.assert_frame_equal(ours, published, check_dtype=False, rtol=1e-12)
