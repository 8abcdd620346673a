"""Run the benchmark queries with DuckDB over a directory of parquet tables.

Each reporting table becomes a view of the same name over its parquet file(s): the columns the
workload reads, at their schema types (:func:`dpbench.telemetry.corpus.open_corpus`), so the SQL in
``queries/`` runs unchanged on simulated, synthetic or real tables.
A ``half`` restricts every view to one of two fixed random halves of the devices
(by the md5 of the guid), which the real-vs-real noise floor uses.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from dpbench.telemetry.benchmark_queries import BENCHMARK, QuerySpec
from dpbench.telemetry.corpus import open_corpus
from dpbench.telemetry.schema import quote

HALVES = (0, 1)
MEMORY_LIMIT = "1GB"
"""DuckDB's memory limit per connection: a query that needs more spills to a temporary directory on disk
(DuckDB's default, 80% of the machine's memory, would let one aggregation take a laptop's memory)."""


def connect(tables_dir: Path | str, queries: tuple[QuerySpec, ...] = BENCHMARK,
            half: int | None = None, allow_empty: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per table the queries need (see :func:`open_corpus`)."""
    if half is not None and half not in HALVES:
        raise ValueError(f"half must be 0 or 1, got {half}")
    needed = list(dict.fromkeys(t for q in queries for t in q.tables))
    sources = open_corpus(tables_dir, needed, allow_empty)
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT})
    for name, source in sources.items():
        where = f" WHERE ascii(right(md5(guid), 1)) % 2 = {half}" if half is not None else ""
        con.execute(f"CREATE VIEW {quote(name)} AS SELECT * FROM ({source.select_sql()}){where}")
    return con


def run_queries(tables_dir: Path | str, queries: tuple[QuerySpec, ...] = BENCHMARK,
                half: int | None = None, allow_empty: bool = False) -> dict[str, pd.DataFrame]:
    """Results of the queries, keyed by query name (``allow_empty``: see :func:`open_corpus`)."""
    con = connect(tables_dir, queries, half, allow_empty)
    try:
        return {q.name: con.execute(q.sql).df() for q in queries}
    finally:
        con.close()


def write_results(results: dict[str, pd.DataFrame], out_dir: Path | str) -> list[Path]:
    """Write each result as ``out_dir/<result_name>.csv`` (the published answer's file name)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_name = {q.name: q for q in BENCHMARK}
    paths = []
    for name, frame in results.items():
        path = out_dir / f"{by_name[name].result_name}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def read_results(results_dir: Path | str, queries: tuple[QuerySpec, ...] = BENCHMARK) -> dict[str, pd.DataFrame | None]:
    """Saved results (or published answers) keyed by query name; None where a file is absent."""
    results_dir = Path(results_dir)
    out: dict[str, pd.DataFrame | None] = {}
    for q in queries:
        path = results_dir / f"{q.result_name}.csv"
        out[q.name] = pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.exists() else None
    return out
