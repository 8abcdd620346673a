"""A directory of reporting tables in parquet, read as it comes.

A table ``T`` is the file ``DIR/T.parquet`` (or ``T.snappy.parquet``, ``T.parq``) or a folder ``DIR/T/`` of
parquet parts (any depth; ``key=value`` folders, Spark's Hive partitioning, add the column ``key`` when every
part has the same keys). A name that differs only in case is accepted when it is the only one. The same
reader serves simulated, synthetic and real tables, so every consumer (the queries, the wide table) sees one
layout: each table as the columns the workload reads (:mod:`.column_usage`), each at its schema type.

* A column that no reader reads is ignored, whatever its type, and may be absent.
* A read column of another type is cast when no value changes, with one warning per column, and refused
  otherwise (:mod:`.column_cast`). Every part of a folder must hold each read column, with one kind of
  type (a part where it is all nulls, Arrow type null, agrees with any): DuckDB would otherwise cast
  the other parts to the first part's type without a word, or fail on a part without the column.
* A NaN or infinite value of a float column is read as null, with one warning per column and its count.
* A missing or empty optional table (a folder without parquet files counts as missing) is read as a table
  with no rows, with a warning; the required table (the device list) must be there and have rows
  (:mod:`.schema`).

Every problem of every table is collected and raised as one :class:`SchemaError`, so a user fixes a
corpus in one pass. Warnings and errors quote values of the user's own tables: they are for the data
holder, and are no part of any release.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dpbench.telemetry.column_cast import ColumnCast, found_kind, plan_cast
from dpbench.telemetry.column_usage import ColumnUsage, column_usage
from dpbench.telemetry.schema import CANONICAL_TYPES, TABLES, Column, SchemaError, TableSchema, quote

PARQUET_SUFFIXES = (".parquet", ".snappy.parquet", ".parq")
"""The file names a one-file table may have: ``T`` and one of these suffixes."""


class CorpusWarning(UserWarning):
    """A corpus is read with a change the user should know about (a cast column, a missing optional table)."""


@dataclass(frozen=True)
class TableSource:
    """One table as the readers see it: where it is stored (None: missing, read as a table with no rows),
    its row count, how each read column is cast (a missing table's as if stored at the schema types), and
    the Hive partition keys of its folder (``key=value`` folders, read as string columns)."""

    schema: TableSchema
    path: Path | None
    num_rows: int
    casts: tuple[ColumnCast, ...] = ()
    partition_keys: tuple[str, ...] = ()

    @property
    def parquet_glob(self) -> str:
        """The path pattern that DuckDB's read_parquet takes."""
        if self.path is None:
            raise ValueError(f"table {self.schema.name} is missing; it has no files")
        return str(self.path / "**" / "*.parquet") if self.path.is_dir() else str(self.path)

    def read_sql(self) -> str:
        """The read_parquet call over the table's files: columns matched by name across parts (parts may order
        them differently or hold extra ones), partition keys as text columns when the folder has them."""
        hive = "true, hive_types_autocast = false" if self.partition_keys else "false"
        return (f"read_parquet({_sql_string(self.parquet_glob)}, union_by_name = true, "
                f"hive_partitioning = {hive})")

    def select_sql(self) -> str:
        """The SELECT that yields the table's read columns at their schema types."""
        if self.path is None:
            return self.schema.empty_sql([c.column.name for c in self.casts])
        columns = ", ".join(f"{c.expression} AS {quote(c.column.name)}" for c in self.casts)
        return f"SELECT {columns} FROM {self.read_sql()}"


@dataclass(frozen=True)
class _Located:
    """Where a table was found (None: not found), a notice about how, or why nothing was taken."""

    path: Path | None
    note: str = ""


def table_path(directory: Path, table: str) -> Path | None:
    """The file or folder that holds ``table`` in ``directory``, or None."""
    return _locate(directory, table).path


def _locate(directory: Path, table: str) -> _Located:
    """``table``'s file or folder: a listed name, else the one name that differs from a listed name in case only;
    otherwise a note on what the directory holds instead (names in other cases, a CSV file)."""
    names = [f"{table}{suffix}" for suffix in PARQUET_SUFFIXES] + [table]
    for name in names:
        if (directory / name).exists():
            return _Located(directory / name)
    folded = {n.casefold() for n in names}
    near = sorted(p.name for p in directory.iterdir() if p.name.casefold() in folded)
    if len(near) == 1:
        return _Located(directory / near[0], f"table {table} is read from {near[0]} (its name differs in case)")
    if near:
        return _Located(None, f"; {', '.join(near)} differ from it in case only: rename the one to read "
                              f"{table}.parquet")
    csv = [p.name for p in directory.iterdir() if p.name.casefold() == f"{table}.csv".casefold()]
    if csv:
        return _Located(None, f"; {csv[0]} is there, but only parquet is read: write the table as {table}.parquet")
    return _Located(None)


def open_corpus(directory: Path | str, tables: list[str] | None = None,
                allow_empty: bool = False) -> dict[str, TableSource]:
    """The named tables (default: all 13) of ``directory`` as the readers see them.

    Raises one SchemaError listing every problem found (missing required table or read column, a type
    with no cast, parts that disagree on a column, values a cast would change, an empty required table);
    warns (:class:`CorpusWarning`) once per cast column, per column with NaN or infinite values and per
    missing or empty optional table. ``allow_empty``: an empty optional table is no news (synthetic
    output may hold no device of a rare table).
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
    _check_values(sources.values(), problems, notices)
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
    located = _locate(directory, schema.name)
    parts = _parts(located.path) if located.path is not None else []
    if not parts:
        empty_folder = f"; the folder {located.path.name}/ holds no .parquet files" if located.path else ""
        return _missing(directory, schema, usage, located.note + empty_folder, problems, notices)
    if located.note:
        notices.append(located.note)
    path = located.path
    try:
        footers = {part: _footer(part) for part in parts}
    except (pa.ArrowInvalid, OSError) as err:
        problems.append(f"table {schema.name}: {path} is not readable parquet ({err})")
        return None
    keys = _partition_keys(path, parts)
    columns = {part.relative_to(directory).as_posix(): {**dict.fromkeys(keys, pa.string()), **types}
               for part, (types, _) in footers.items()}
    num_rows = sum(rows for _, rows in footers.values())
    casts, table_problems = [], []
    for name in read:
        cast = _column_cast(schema, schema.column(name), columns, usage, table_problems)
        if cast is not None:
            casts.append(cast)
    if num_rows == 0 and schema.required:
        table_problems.append(f"table {schema.name} at {path} is empty; it lists the devices, so it needs "
                              "a row per device")
    elif num_rows == 0 and not allow_empty:
        readers = ", ".join(usage.readers_of(schema.name)) or "no reader"
        notices.append(f"table {schema.name} at {path} has no rows (its readers {readers} see no device in it)")
    problems.extend(table_problems)
    return None if table_problems else TableSource(schema, path, num_rows, tuple(casts), keys)


def _missing(directory: Path, schema: TableSchema, usage: ColumnUsage, note: str, problems: list[str],
             notices: list[str]) -> TableSource | None:
    """A table with no parquet file: a problem if it is required, else a notice and a source with no rows."""
    where = f"expected {schema.name}.parquet or a folder {schema.name}/ of parquet files{note}"
    if schema.required:
        problems.append(f"table {schema.name} is missing from {directory} ({where}); it is required: "
                        "it lists the devices")
        return None
    readers = ", ".join(usage.readers_of(schema.name)) or "no reader"
    notices.append(f"table {schema.name} is missing from {directory} ({where}): read as a table with no "
                   f"rows (its readers {readers} see no device in it)")
    return TableSource(schema, None, 0, tuple(_stored_as_schema(schema.column(c)) for c in
                                              usage.columns(schema.name)))


def _parts(path: Path) -> list[Path]:
    """The parquet files of a table: the file itself, or a folder's ``*.parquet`` files at any depth."""
    return sorted(path.glob("**/*.parquet")) if path.is_dir() else [path]


def _footer(part: Path) -> tuple[dict[str, pa.DataType], int]:
    """A part's column types and row count, from its footer alone."""
    with pq.ParquetFile(part) as parquet:
        return {f.name: f.type for f in parquet.schema_arrow}, parquet.metadata.num_rows


def _partition_keys(path: Path, parts: list[Path]) -> tuple[str, ...]:
    """The Hive partition keys (``key=value`` folders) that every part of a folder has, or () if the parts
    differ (DuckDB reads keys only when every part has the same; a key that a reader needs is then missing
    from some parts, which is reported)."""
    if not path.is_dir():
        return ()
    keys = {tuple(d.split("=", 1)[0] for d in part.relative_to(path).parts[:-1] if "=" in d) for part in parts}
    return keys.pop() if len(keys) == 1 else ()


def _column_cast(schema: TableSchema, column: Column, parts: dict[str, dict[str, pa.DataType]], usage: ColumnUsage,
                 problems: list[str]) -> ColumnCast | None:
    """How a read column is cast from every part's type (``parts``: part name -> column types), or None after
    adding a problem (missing from a part, parts of different kinds of type, no lossless cast)."""
    name = column.name
    lacking = [part for part, types in parts.items() if name not in types]
    if lacking:
        every = len(lacking) == len(parts)
        where = "" if every else f" from {len(lacking)} of {len(parts)} parts (e.g. {lacking[0]})"
        problems.append(f"{schema.name}: column {name!r} is missing{where} (read by "
                        f"{', '.join(usage.readers_of(schema.name, name))}); add it as a {column.kind} column"
                        f"{'' if every else ' to every part'}")
        return None
    typed = {part: types[name] for part, types in parts.items() if not pa.types.is_null(types[name])}
    by_kind = {found_kind(t) or str(t): part for part, t in typed.items()}
    if len(by_kind) > 1:
        (a, b) = list(by_kind.values())[:2]
        problems.append(f"{schema.name}: column {name!r} has type {typed[a]} in {a} but {typed[b]} in {b}; DuckDB "
                        f"would read every part as one type: write it as {CANONICAL_TYPES[column.kind]} in every part")
        return None
    casts = [plan_cast(column, t) for t in dict.fromkeys(typed.values())] or [plan_cast(column, pa.null())]
    if None in casts:
        found = next(t for t, c in zip(dict.fromkeys(typed.values()), casts) if c is None)
        problems.append(f"{schema.name}: column {name!r} has type {found}, expected a {column.kind} column, and no "
                        f"cast keeps its values; write it as {CANONICAL_TYPES[column.kind]}")
        return None
    return _merged(casts)


def _merged(casts: list[ColumnCast]) -> ColumnCast:
    """One cast for a column whose parts store one kind of value in several types (int32 and int64): every
    type's check applies, and the user is told if any type needs telling."""
    changed = " OR ".join(dict.fromkeys(f"({c.changed})" for c in casts if c.changed))
    return replace(casts[0], changed=changed or None, warn=any(c.warn for c in casts))


def _stored_as_schema(column: Column) -> ColumnCast:
    cast = plan_cast(column, CANONICAL_TYPES[column.kind])
    assert cast is not None  # every kind reads its own canonical type as it is
    return cast


def _check_values(sources: Iterable[TableSource], problems: list[str], notices: list[str]) -> None:
    """In one scan per table, add a problem for each cast column with values that the cast would change, and a
    notice for each float column with NaN or infinite values (read as missing)."""
    con = duckdb.connect()
    try:
        for source in sources:
            checked = [c for c in source.casts if c.changed is not None]
            nonfinite = [c for c in source.casts if c.nonfinite is not None]
            if source.path is None or not (checked or nonfinite):
                continue
            terms = []
            for cast in checked:
                changed = f"{quote(cast.column.name)} IS NOT NULL AND ({cast.changed})"
                terms.append(f"count(*) FILTER (WHERE {changed}), "
                             f"min(CAST({quote(cast.column.name)} AS VARCHAR)) FILTER (WHERE {changed})")
            terms.extend(f"count(*) FILTER (WHERE {cast.nonfinite})" for cast in nonfinite)
            counts = con.execute(f"SELECT {', '.join(terms)} FROM {source.read_sql()}").fetchone()
            for i, cast in enumerate(checked):
                n_changed, example = counts[2 * i], counts[2 * i + 1]
                if n_changed:
                    problems.append(
                        f"{source.schema.name}: column {cast.column.name!r} has type {cast.found}, expected a "
                        f"{cast.column.kind} column ({cast.target}); {n_changed:,d} of {source.num_rows:,d} values "
                        f"would change in the cast (e.g. {example!r}); write the column as {cast.target}")
            for cast, n_nonfinite in zip(nonfinite, counts[2 * len(checked):]):
                if n_nonfinite:
                    notices.append(f"{source.schema.name}.{cast.column.name}: {n_nonfinite:,d} NaN or infinite "
                                   "values read as missing")
    finally:
        con.close()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
