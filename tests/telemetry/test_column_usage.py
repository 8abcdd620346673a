"""What the workload reads is derived from its SQL: the derivation is right on SQL whose reads are known, agrees
with the tables each query declares, and the docs' table of read columns is the derived one."""

from __future__ import annotations

import re
from pathlib import Path

from dpbench.telemetry.benchmark_queries import BENCHMARK
from dpbench.telemetry.column_usage import column_usage, derive_usage, readers
from dpbench.telemetry.schema import TABLES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


def test_derivation_finds_exactly_the_columns_an_sql_reads():
    usage = derive_usage({
        "join": """SELECT a.chassistype, SUM(b.nrs * b.mean) AS w FROM system_sysinfo_unique_normalized a
                   JOIN system_hw_pkg_power b ON a.guid = b.guid WHERE b.dt > DATE '2020-01-01' GROUP BY 1""",
        "unqualified": "SELECT browser, COUNT(*) FROM system_web_cat_usage WHERE duration_ms > 0 GROUP BY browser",
        "count only": 'SELECT COUNT(*) FROM "SYSTEM_PKG_C0"',
        "comment only": "-- system_batt_dc_events is not read here\nSELECT 1 AS one",
    })
    assert usage.reads == {
        "join": {"system_sysinfo_unique_normalized": ("guid", "chassistype"),
                 "system_hw_pkg_power": ("guid", "dt", "nrs", "mean")},
        "unqualified": {"system_web_cat_usage": ("browser", "duration_ms")},
        "count only": {"system_pkg_C0": ()},
        "comment only": {},
    }
    assert usage.columns("system_pkg_C0") == ("guid",)  # the halves split every table a reader reads by guid
    assert usage.columns("system_batt_dc_events") == ()
    assert usage.readers_of("system_hw_pkg_power", "mean") == ("join",)


def test_workload_reads_the_columns_its_sql_names_and_not_the_ones_a_real_corpus_stored_otherwise():
    usage = column_usage()
    assert "instance" not in usage.columns("system_hw_pkg_power") and "mean" in usage.columns("system_hw_pkg_power")
    assert usage.columns("system_batt_dc_events") == ("guid", "dt", "duration_mins", "num_power_ons")
    sql = "\n".join(readers().values()).lower()
    for table in TABLES:
        for column in usage.columns(table):
            assert column.lower() in sql, (table, column)


def test_each_query_declares_the_tables_its_sql_reads():
    usage = column_usage()
    for query in BENCHMARK:
        assert set(query.tables) == set(usage.reads[query.name]), query.name
    declared = {t for q in BENCHMARK for t in q.tables}  # what the query runner opens for the wide table
    wide = {t for reader, tables in usage.reads.items() if reader.startswith("wide table") for t in tables}
    assert wide <= declared


def test_docs_list_the_derived_read_columns():
    text = DOCS.read_text()
    rows = re.findall(r"^\| `(\w+)` \| (required|optional) \| (.+?) \|$", text, flags=re.MULTILINE)
    documented = {table: (status, tuple(re.findall(r"`([^`]+)`", columns))) for table, status, columns in rows}
    usage = column_usage()
    assert documented == {t: ("required" if TABLES[t].required else "optional", usage.columns(t)) for t in TABLES}
