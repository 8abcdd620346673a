"""A directory of reporting tables in parquet, checked against the schema.

A table ``T`` is either the file ``DIR/T.parquet`` or a folder ``DIR/T/`` of
parquet parts. The same reader serves simulated, synthetic and real tables, so
every consumer (queries, scoring, a future decoder) sees one validated layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from dpbench.telemetry.schema import TABLES, SchemaError, TableSchema


@dataclass(frozen=True)
class TableSource:
    """Where one validated table is stored and how many rows it has."""

    schema: TableSchema
    path: Path
    num_rows: int

    @property
    def parquet_glob(self) -> str:
        """The path pattern that DuckDB's read_parquet takes."""
        return str(self.path / "*.parquet") if self.path.is_dir() else str(self.path)


def table_path(directory: Path, table: str) -> Path | None:
    """The file or folder that holds ``table`` in ``directory``, or None."""
    for candidate in (directory / f"{table}.parquet", directory / table):
        if candidate.exists():
            return candidate
    return None


def open_table(directory: Path | str, table: str, allow_empty: bool = False) -> TableSource:
    """Locate and validate one table; raise SchemaError saying what is wrong and how to fix it.
    An empty table is an error unless ``allow_empty`` (synthetic output may hold no device of a rare table)."""
    directory = Path(directory)
    if table not in TABLES:
        raise SchemaError(f"unknown table {table!r}; known tables: {sorted(TABLES)}")
    path = table_path(directory, table)
    if path is None:
        raise SchemaError(
            f"table {table} is missing from {directory}: expected {table}.parquet or a folder {table}/ of parquet files"
        )
    try:
        dataset = ds.dataset(path, format="parquet")
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"table {table}: {path} is not readable parquet ({err})") from err
    schema = TABLES[table]
    schema.validate(dataset.schema)
    num_rows = dataset.count_rows()
    if num_rows == 0 and not allow_empty:
        raise SchemaError(f"table {table} at {path} is empty; write at least one row or leave the table out")
    return TableSource(schema, path, num_rows)


def open_corpus(directory: Path | str, tables: list[str] | None = None) -> dict[str, TableSource]:
    """Validate the named tables (default: all 13) of a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SchemaError(f"table directory {directory} does not exist")
    return {name: open_table(directory, name) for name in (tables or list(TABLES))}


def load_tables(directory: Path | str, tables: list[str] | None = None) -> dict[str, pa.Table]:
    """Read the named tables (default: all 13) into memory, validated, columns in schema order."""
    sources = open_corpus(directory, tables)
    return {
        name: ds.dataset(src.path, format="parquet").to_table(columns=src.schema.column_names)
        for name, src in sources.items()
    }
