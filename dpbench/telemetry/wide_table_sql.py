"""The queries the wide table runs over a corpus: one per block (the devices' attributes, and one row per
device of each (guid, dt) table family), plain DuckDB SQL over the reporting tables' views.

Kept apart from :mod:`.wide_table` (which runs them and turns the result into scaled rows) because
:mod:`.column_usage` derives the columns they read from this text alone, before any corpus is opened.
"""

from __future__ import annotations

from dpbench.telemetry.browsing import BROWSERS, CATEGORIES

POWER_STATES = ("on_time", "off_time", "mods_time", "sleep_time")
"""The power-state columns of system_on_off_suspend_time_day, in the wide table's order."""


def _per_day(table: str, sums: dict[str, str]) -> str:
    """``table`` summed per (guid, day), for a per-device aggregate over it: there, ``COUNT(dt)`` counts the
    distinct days with a date, and means are sums over sums (a mean's count is summed as a sum of 0/1).
    Only plain sums, which DuckDB streams over the parquet files and spills to disk when memory is short."""
    terms = ", ".join(f"SUM({expression}) AS {name}" for name, expression in sums.items())
    return f"(SELECT guid, dt, {terms} FROM {table} GROUP BY guid, dt)"


_NRS = {"nrs_sum": "nrs", "nrs_count": "CAST(nrs IS NOT NULL AS INTEGER)"}
_DAYS_NRS = "COUNT(dt) AS days, SUM(nrs_sum) / NULLIF(SUM(nrs_count), 0) AS nrs"
_RECEIVED, _SENT = "OS:NETWORK INTERFACE::BYTES RECEIVED/SEC::", "OS:NETWORK INTERFACE::BYTES SENT/SEC::"
_SENSORS = {"psys": ("system_psys_rap_watts", "avg_psys_rap_watts"), "c0": ("system_pkg_C0", "avg_pkg_c0"),
            "freq": ("system_pkg_avg_freq_mhz", "avg_avg_freq_mhz"),
            "temp": ("system_pkg_temp_centigrade", "avg_temp_centigrade")}


def _weighted(table: str, column: str, name: str) -> str:
    """Days, mean sample count and the nrs-weighted mean of ``column`` per device."""
    per_day = _per_day(table, {**_NRS, "weighted": f"nrs * {column}"})
    return (f"SELECT guid, {_DAYS_NRS}, SUM(weighted) / NULLIF(SUM(nrs_sum), 0) AS {name} "
            f"FROM {per_day} GROUP BY guid")


def _is(column: str, value: str) -> str:
    """``column`` equals the catalogue's ``value`` up to case and surrounding spaces (exports differ in both)."""
    return f"lower(trim({column})) = '{value.strip().lower()}'"


_NETWORK_SUMS = {**_NRS, **{f"{side}_{what}": f"CASE WHEN {_is('input_desc', desc)} THEN {term} END"
                            for side, desc in (("received", _RECEIVED), ("sent", _SENT))
                            for what, term in (("weighted", "nrs * avg_bytes_sec"), ("weight", "nrs"))}}
PER_DEVICE_SQL: dict[str, str] = {
    "network": f"""SELECT guid, {_DAYS_NRS},
        COALESCE(SUM(received_weighted) / SUM(received_weight), 0) AS received_rate,
        COALESCE(SUM(sent_weighted) / SUM(sent_weight), 0) AS sent_rate
        FROM {_per_day("system_network_consumption", _NETWORK_SUMS)} GROUP BY guid""",
    "memory": _weighted("system_memory_utilization", "avg_percentage_used", "percent_used"),
    **{family: _weighted(f'"{table}"', column, "value") for family, (table, column) in _SENSORS.items()},
    "pkg_power": _weighted("system_hw_pkg_power", "mean", "value"),
    "battery": f"""SELECT guid, COUNT(dt) AS days, SUM(duration_sum) / NULLIF(SUM(duration_count), 0) AS duration_mins,
        SUM(ons_sum) / NULLIF(SUM(ons_count), 0) AS power_ons
        FROM {_per_day("system_batt_dc_events", {
            "duration_sum": "duration_mins", "duration_count": "CAST(duration_mins IS NOT NULL AS INTEGER)",
            "ons_sum": "num_power_ons", "ons_count": "CAST(num_power_ons IS NOT NULL AS INTEGER)"})} GROUP BY guid""",
    "power_states": f"""SELECT guid, COUNT(dt) AS days, SUM(total_sum) / NULLIF(SUM(total_count), 0) AS seconds_per_day,
        {", ".join(f"SUM({s}) AS {s}" for s in POWER_STATES)}
        FROM {_per_day("system_on_off_suspend_time_day", {
            "total_sum": " + ".join(POWER_STATES), "total_count": f"CAST({' + '.join(POWER_STATES)} IS NOT NULL AS "
                                                                  "INTEGER)", **{s: s for s in POWER_STATES}})}
        GROUP BY guid""",
    "browsing": f"""SELECT p.guid, p.days, u.usage_rows / p.days AS rows_per_day,
        u.duration_ms / p.days AS duration_ms_per_day,
        {", ".join(f"u.rows_{b}, u.ms_{b}" for b in BROWSERS)}, {", ".join(f"p.{c}" for c in CATEGORIES)}
        FROM (SELECT guid, COUNT(dt) AS days, {", ".join(f"SUM({c}) AS {c}" for c in CATEGORIES)}
              FROM {_per_day("system_web_cat_pivot_duration", {c: c for c in CATEGORIES})} GROUP BY guid) p
        JOIN (SELECT guid, COUNT(*) AS usage_rows, SUM(duration_ms) AS duration_ms,
              {", ".join(f"COUNT(*) FILTER (WHERE {_is('browser', b)}) AS rows_{b}, "
                         f"COALESCE(SUM(duration_ms) FILTER (WHERE {_is('browser', b)}), 0) AS ms_{b}"
                         for b in BROWSERS)}
              FROM system_web_cat_usage GROUP BY guid) u ON p.guid = u.guid""",
}
"""One query per table family: a row per device that reports to it (days, mean sample count, value summaries)."""
_DEVICES_SQL = """SELECT s.guid, s.chassistype AS chassis, s.countryname_normalized AS country,
    s.modelvendor_normalized AS vendor, s.os, s.persona, s.ram,
    s.cpuname || '|' || COALESCE(c.cpugen, '') || '|' || COALESCE(c.marketcodename, '') AS cpu
    FROM system_sysinfo_unique_normalized s LEFT JOIN system_cpu_metadata c ON s.guid = c.guid
    ORDER BY s.guid"""
WIDE_TABLE_SQL: dict[str, str] = {"devices": _DEVICES_SQL, **PER_DEVICE_SQL}
"""Every query the wide table runs over a corpus, by block (the columns they read: :mod:`.column_usage`)."""
