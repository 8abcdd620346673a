"""A directory of reporting tables in parquet, read as it comes.

A table ``T`` is either the file ``DIR/T.parquet`` or a folder ``DIR/T/`` of parquet parts (any depth).
The same reader serves simulated, synthetic and real tables, so every consumer (the queries, the wide
table) sees one layout: each table as the columns the workload reads (:mod:`.column_usage`), each at its
schema type.

* A column that no reader reads is ignored, whatever its type, and may be absent.
* A read column of another type is cast when no value changes, with one warning per column, and refused
  otherwise (:mod:`.column_cast`).
* A missing or empty optional table is read as a table with no rows, with a warning; the required table
  (the device list) must be there and have rows (:mod:`.schema`).

Every problem of every table is collected and raised as one :class:`SchemaError`, so a user fixes a
corpus in one pass. Warnings and errors quote values of the user's own tables: they are for the data
holder, and are no part of any release.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from dpbench.telemetry.column_cast import ColumnCast, plan_cast
from dpbench.telemetry.column_usage import ColumnUsage, column_usage
from dpbench.telemetry.schema import CANONICAL_TYPES, TABLES, Column, SchemaError, TableSchema, quote


class CorpusWarning(UserWarning):
    """A corpus is read with a change the user should know about (a cast column, a missing optional table)."""


@dataclass(frozen=True)
class TableSource:
    """One table as the readers see it: where it is stored (None: missing, read as a table with no rows),
    its row count, and how each read column is cast (a missing table's as if stored at the schema types)."""

    schema: TableSchema
    path: Path | None
    num_rows: int
    casts: tuple[ColumnCast, ...] = ()

    @property
    def parquet_glob(self) -> str:
        """The path pattern that DuckDB's read_parquet takes."""
        if self.path is None:
            raise ValueError(f"table {self.schema.name} is missing; it has no files")
        return str(self.path / "**" / "*.parquet") if self.path.is_dir() else str(self.path)

    def select_sql(self) -> str:
        """The SELECT that yields the table's read columns at their schema types."""
        if self.path is None:
            return self.schema.empty_sql([c.column.name for c in self.casts])
        columns = ", ".join(f"{c.expression} AS {quote(c.column.name)}" for c in self.casts)
        return f"SELECT {columns} FROM read_parquet({_sql_string(self.parquet_glob)})"


def table_path(directory: Path, table: str) -> Path | None:
    """The file or folder that holds ``table`` in ``directory``, or None."""
    for candidate in (directory / f"{table}.parquet", directory / table):
        if candidate.exists():
            return candidate
    return None


def open_corpus(directory: Path | str, tables: list[str] | None = None,
                allow_empty: bool = False) -> dict[str, TableSource]:
    """The named tables (default: all 13) of ``directory`` as the readers see them.

    Raises one SchemaError listing every problem found (missing required table or read column, a type
    with no cast, values a cast would change, an empty required table); warns (:class:`CorpusWarning`)
    once per cast column and per missing or empty optional table. ``allow_empty``: an empty optional
    table is no news (synthetic output may hold no device of a rare table).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SchemaError(f"table directory {directory} does not exist")
    names = list(TABLES) if tables is None else tables
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        raise SchemaError(f"unknown tables {unknown}; known tables: {sorted(TABLES)}")
    usage = column_usage()
    problems: list[str] = []
    notices: list[str] = []
    sources = {}
    for name in names:
        source = _open_table(directory, TABLES[name], usage, allow_empty, problems, notices)
        if source is not None:
            sources[name] = source
    _check_casts(sources.values(), problems)
    if problems:
        raise SchemaError(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in the tables of "
                          f"{directory}:\n" + "\n".join(f"- {p}" for p in problems))
    for source in sources.values():
        for cast in source.casts:
            if cast.warn:
                notices.append(f"{source.schema.name}.{cast.column.name} is stored as {cast.found} and read as "
                               f"{cast.target} (the cast changes no value)")
    for notice in notices:
        warnings.warn(notice, CorpusWarning, stacklevel=2)
    return sources


def _open_table(directory: Path, schema: TableSchema, usage: ColumnUsage, allow_empty: bool,
                problems: list[str], notices: list[str]) -> TableSource | None:
    """The table's source, or None after adding its problems to ``problems``."""
    read = usage.columns(schema.name)
    readers = ", ".join(usage.readers_of(schema.name)) or "no reader"
    path = table_path(directory, schema.name)
    if path is None:
        where = f"expected {schema.name}.parquet or a folder {schema.name}/ of parquet files"
        if schema.required:
            problems.append(f"table {schema.name} is missing from {directory} ({where}); it is required: "
                            "it lists the devices")
            return None
        notices.append(f"table {schema.name} is missing from {directory} ({where}): read as a table with no "
                       f"rows (its readers {readers} see no device in it)")
        return TableSource(schema, None, 0, tuple(_stored_as_schema(schema.column(c)) for c in read))
    try:
        dataset = ds.dataset(sorted(path.glob("**/*.parquet")) if path.is_dir() else path, format="parquet")
        found, num_rows = dataset.schema, dataset.count_rows()
    except (pa.ArrowInvalid, OSError) as err:
        problems.append(f"table {schema.name}: {path} is not readable parquet ({err})")
        return None
    casts, table_problems = [], []
    for name in read:
        column = schema.column(name)
        if name not in found.names:
            table_problems.append(f"{schema.name}: column {name!r} is missing (read by "
                                  f"{', '.join(usage.readers_of(schema.name, name))}); add it as a {column.kind} "
                                  "column")
            continue
        cast = plan_cast(column, found.field(name).type)
        if cast is None:
            table_problems.append(f"{schema.name}: column {name!r} has type {found.field(name).type}, expected a "
                                  f"{column.kind} column, and no cast keeps its values; write it as "
                                  f"{CANONICAL_TYPES[column.kind]}")
            continue
        casts.append(cast)
    if num_rows == 0 and schema.required:
        table_problems.append(f"table {schema.name} at {path} is empty; it lists the devices, so it needs "
                              "a row per device")
    elif num_rows == 0 and not allow_empty:
        notices.append(f"table {schema.name} at {path} has no rows (its readers {readers} see no device in it)")
    problems.extend(table_problems)
    return None if table_problems else TableSource(schema, path, num_rows, tuple(casts))


def _stored_as_schema(column: Column) -> ColumnCast:
    cast = plan_cast(column, CANONICAL_TYPES[column.kind])
    assert cast is not None  # every kind reads its own canonical type as it is
    return cast


def _check_casts(sources: Iterable[TableSource], problems: list[str]) -> None:
    """Add a problem for each cast column with values that the cast would change (one scan per table)."""
    con = duckdb.connect()
    try:
        for source in sources:
            checked = [c for c in source.casts if c.changed is not None]
            if source.path is None or not checked:
                continue
            terms = []
            for cast in checked:
                changed = f"{quote(cast.column.name)} IS NOT NULL AND ({cast.changed})"
                terms.append(f"count(*) FILTER (WHERE {changed}), "
                             f"min(CAST({quote(cast.column.name)} AS VARCHAR)) FILTER (WHERE {changed})")
            counts = con.execute(f"SELECT {', '.join(terms)} FROM read_parquet({_sql_string(source.parquet_glob)})"
                                 ).fetchone()
            for i, cast in enumerate(checked):
                n_changed, example = counts[2 * i], counts[2 * i + 1]
                if n_changed:
                    problems.append(
                        f"{source.schema.name}: column {cast.column.name!r} has type {cast.found}, expected a "
                        f"{cast.column.kind} column ({cast.target}); {n_changed:,d} of {source.num_rows:,d} values "
                        f"would change in the cast (e.g. {example!r}); write the column as {cast.target}")
    finally:
        con.close()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
