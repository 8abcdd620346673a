"""The benchmark queries: the SPEC's 11 analyst queries and how each is scored.

Each query is one SQL file in ``queries/`` that reads views named like the
reporting tables. Its result is saved and compared under ``result_name``, the
file stem of its published answer in the ground-truth directory (NetAsym's
answer, ``server_exploration_1``, is not published; it is scored only where an
answer exists, e.g. in the real-vs-real halves noise floor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dpbench.telemetry.schema import WEB_CATEGORIES

QUERY_DIR = Path(__file__).with_name("queries")

AGGREGATE = "aggregate"
DISTRIBUTION = "distribution"
HISTOGRAM = "histogram"
RANKING_CATEGORICAL = "ranking_categorical"
ROW_LEVEL = "row_level"


@dataclass(frozen=True)
class QuerySpec:
    """One benchmark query and the columns its scoring reads.

    keys: group-key columns (the bin for a histogram, the category for a distribution,
      the group for a categorical ranking, the row id for row-level output).
    shares: columns compared as distributions by total variation distance.
    metrics: numeric columns compared by relative error (per group, or of the mean for row-level).
    categorical: row-level descriptor columns compared as distributions.
    counts: the metrics that count devices or rows (number_of_systems, days): they say how many, not
      what the devices measured, so value-only scoring leaves them out (as it leaves out key overlap and
      a row-level answer's row count).
    tables: the reporting tables the query reads.
    """

    name: str
    sql_file: str
    result_name: str
    kind: str
    keys: tuple[str, ...]
    tables: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    shares: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()

    @property
    def sql(self) -> str:
        return (QUERY_DIR / self.sql_file).read_text()


SYSINFO, CPU = "system_sysinfo_unique_normalized", "system_cpu_metadata"
HARDWARE = ("system_psys_rap_watts", "system_pkg_C0", "system_pkg_avg_freq_mhz", "system_pkg_temp_centigrade")

BENCHMARK: tuple[QuerySpec, ...] = (
    QuerySpec("ChassisAgg", "chassis_agg.sql", "avg_platform_power_c0_freq_temp_by_chassis", AGGREGATE,
              ("chassistype",), (SYSINFO, *HARDWARE),
              metrics=("number_of_systems", "avg_psys_rap_watts", "avg_pkg_c0", "avg_freq_mhz", "avg_temp_centigrade"),
              counts=("number_of_systems",)),
    QuerySpec("XeonGeo", "xeon_geo.sql", "Xeon_network_consumption", AGGREGATE, ("processor_class", "os"),
              (SYSINFO, "system_network_consumption"),
              metrics=("number_of_systems", "avg_bytes_received", "avg_bytes_sent"), counts=("number_of_systems",)),
    QuerySpec("PowerGeo", "power_geo.sql", "pkg_power_by_country", AGGREGATE, ("countryname_normalized",),
              (SYSINFO, "system_hw_pkg_power"), metrics=("number_of_systems", "avg_pkg_power_consumed"),
              counts=("number_of_systems",)),
    QuerySpec("BatteryGeo", "battery_geo.sql", "battery_power_on_geographic_summary", AGGREGATE, ("country",),
              (SYSINFO, "system_batt_dc_events"),
              metrics=("number_of_systems", "avg_number_of_dc_powerons", "avg_duration"), counts=("number_of_systems",)),
    QuerySpec("BatteryDemo", "battery_demo.sql", "battery_on_duration_cpu_family_gen", AGGREGATE,
              ("marketcodename", "cpugen"), (CPU, "system_batt_dc_events"),
              metrics=("number_of_systems", "avg_duration_mins_on_battery"), counts=("number_of_systems",)),
    QuerySpec("RamHist", "ram_hist.sql", "ram_utilization_histogram", HISTOGRAM, ("ram_gb",),
              ("system_memory_utilization",), metrics=("avg_percentage_used",), shares=("count(DISTINCT guid)",)),
    QuerySpec("BrowserHist", "browser_hist.sql", "popular_browsers_by_count_usage_percentage", DISTRIBUTION,
              ("browser",), ("system_web_cat_usage",),
              shares=("percent_systems", "percent_instances", "percent_duration")),
    QuerySpec("BrowserRank", "browser_rank.sql", "most_popular_browser_in_each_country_by_system_count",
              RANKING_CATEGORICAL, ("country",), (SYSINFO, "system_web_cat_usage"), metrics=("browser",)),
    QuerySpec("PersonaPivot", "persona_pivot.sql", "persona_web_cat_usage_analysis", AGGREGATE, ("persona",),
              (SYSINFO, "system_web_cat_pivot_duration"),
              metrics=("number_of_systems", "days", *WEB_CATEGORIES), counts=("number_of_systems", "days")),
    QuerySpec("SleepPivot", "sleep_pivot.sql", "on_off_mods_sleep_summary_by_cpu_marketcodename_gen", AGGREGATE,
              ("marketcodename", "cpugen"), (CPU, "system_on_off_suspend_time_day"),
              metrics=("number_of_systems", "avg_on_time", "avg_off_time", "avg_modern_sleep_time", "avg_sleep_time",
                       "avg_total_time", "avg_pcnt_on_time", "avg_pcnt_off_time", "avg_pcnt_mods_time",
                       "avg_pcnt_sleep_time"),
              counts=("number_of_systems",)),
    QuerySpec("NetAsym", "net_asym.sql", "server_exploration_1", ROW_LEVEL, ("guid",),
              (SYSINFO, "system_network_consumption"), metrics=("nrs", "received_bytes", "sent_bytes"),
              categorical=("os", "chassistype", "vendor", "ram", "number_of_cores")),
)
"""The 11 benchmark queries of the SPEC, in its order."""

QUERIES: dict[str, QuerySpec] = {q.name: q for q in BENCHMARK}


def select_queries(names: list[str] | None) -> tuple[QuerySpec, ...]:
    """The named queries (default all), or ValueError naming the unknown ones."""
    if not names:
        return BENCHMARK
    unknown = [n for n in names if n not in QUERIES]
    if unknown:
        raise ValueError(f"unknown queries {unknown}; known: {list(QUERIES)}")
    return tuple(QUERIES[n] for n in names)
