"""Which columns of which reporting table the workload reads, derived from its SQL.

The readers of a corpus are the benchmark queries (``queries/*.sql``) and the wide table's queries
(:data:`dpbench.telemetry.wide_table.WIDE_TABLE_SQL`). What each reads is not declared by hand, so it
cannot drift from the SQL: DuckDB binds each reader's SQL against empty views of the schema, once with
every table and column, then with one table or one column left out. A table or column whose absence
makes binding fail is read. (An unqualified name that two joined tables share does not bind in the first
place, so leaving a column out cannot re-bind a reference to another table's column; a correlated
subquery could, and no reader has one.) ``guid`` counts as read from every table the workload reads:
the halves noise floor splits the devices by it.

A corpus is checked and cast on the read columns only (:mod:`dpbench.telemetry.corpus`); any other
column is ignored whatever its type, or absence.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import duckdb

from dpbench.telemetry.benchmark_queries import BENCHMARK
from dpbench.telemetry.schema import TABLES, quote
from dpbench.telemetry.wide_table_sql import WIDE_TABLE_SQL

GUID = "guid"


def readers() -> dict[str, str]:
    """Every SQL statement that reads a corpus, by reader name (query name, or 'wide table: BLOCK')."""
    return {q.name: q.sql for q in BENCHMARK} | {f"wide table: {block}": sql for block, sql in WIDE_TABLE_SQL.items()}


@dataclass(frozen=True)
class ColumnUsage:
    """reads[reader][table]: the columns of ``table`` that ``reader`` reads, in schema order."""

    reads: dict[str, dict[str, tuple[str, ...]]]

    def columns(self, table: str) -> tuple[str, ...]:
        """The columns of ``table`` that any reader reads (with guid), in schema order; () if none reads it."""
        by_reader = [tables[table] for tables in self.reads.values() if table in tables]
        read = {c for columns in by_reader for c in columns} | ({GUID} if by_reader else set())
        return tuple(c for c in TABLES[table].column_names if c in read)

    def readers_of(self, table: str, column: str | None = None) -> tuple[str, ...]:
        """The readers that read ``table`` (or its ``column``)."""
        return tuple(r for r, tables in self.reads.items()
                     if table in tables and (column is None or column in tables[table]))


def derive_usage(sql_by_reader: dict[str, str]) -> ColumnUsage:
    """The columns each reader's SQL reads, by binding it without each table and column in turn."""
    con = duckdb.connect()
    try:
        for table in TABLES.values():
            _define(con, table.name)
        for reader, sql in sql_by_reader.items():
            _bind(con, sql)  # raises if the SQL is wrong against the full schema
        reads: dict[str, dict[str, tuple[str, ...]]] = {reader: {} for reader in sql_by_reader}
        for table in TABLES.values():
            candidates = [r for r, sql in sql_by_reader.items() if table.name.lower() in sql.lower()]
            con.execute(f"DROP VIEW {quote(table.name)}")
            candidates = [r for r in candidates if not _binds(con, sql_by_reader[r])]
            for column in table.column_names:
                _define(con, table.name, leave_out=column)
                for reader in candidates:
                    if not _binds(con, sql_by_reader[reader]):
                        reads[reader][table.name] = (*reads[reader].get(table.name, ()), column)
            for reader in candidates:
                reads[reader].setdefault(table.name, ())
            _define(con, table.name)
    finally:
        con.close()
    return ColumnUsage(reads)


@cache
def column_usage() -> ColumnUsage:
    """What the workload's readers read (derived once per process, in about a second)."""
    return derive_usage(readers())


def _define(con: duckdb.DuckDBPyConnection, table: str, leave_out: str | None = None) -> None:
    names = [c for c in TABLES[table].column_names if c != leave_out]
    con.execute(f"CREATE OR REPLACE VIEW {quote(table)} AS {TABLES[table].empty_sql(names)}")


def _bind(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    con.execute(f"DESCRIBE {sql}")


def _binds(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    try:
        _bind(con, sql)
    except duckdb.Error:
        return False
    return True
