"""How a column that the workload reads is cast from the type a user's parquet holds to its schema kind.

A real corpus stores the same values in other forms: sample counts as doubles (3.0), numbers as text
('12'), days as timestamps at midnight or as 'YYYY-MM-DD' text, core counts as integers. Every such
form is cast to the kind's SQL type (:data:`dpbench.telemetry.schema.SQL_TYPES`) when the cast keeps
every value, and refused when it would change one:

=========  ==============================================  ===========================================
kind       accepted as they are (no warning)               cast with a warning, when every value keeps
=========  ==============================================  ===========================================
integer    any integer type                                floats and decimals that are whole numbers;
                                                           text that reads as a whole number
float      any float, integer or decimal type              text that reads as a number
string     string, large string, dictionary of strings     integers; floats and decimals that are whole
                                                           numbers (written without a fraction: '4')
date       date32, date64                                  timestamps at midnight; text that reads as a
                                                           date with no time of day
=========  ==============================================  ===========================================

A column of nulls only (Arrow type null) is read as nulls of the kind, with a warning. Any other pair
(booleans, binary, lists, a date for a number, ...) has no cast. Nulls stay null.

A NaN or infinite value of a float column is read as null (missing): exports write a missing measurement as
NaN as often as null, and an aggregate over a group with one NaN or infinity is NaN or infinite, which would
spoil every answer and wide-table row it reaches. The reader counts such values and warns once per column.
A cast that could change a value carries the SQL predicate that is true on such a value, which the
reader evaluates over the column before it accepts the cast (:mod:`dpbench.telemetry.corpus`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow as pa

from dpbench.telemetry.schema import CANONICAL_TYPES, DATE, FLOAT, INTEGER, SQL_TYPES, STRING, Column, quote

DECIMAL, TIMESTAMP = "decimal", "timestamp"


@dataclass(frozen=True)
class ColumnCast:
    """A read column as the queries see it.

    expression: the SQL expression that yields the column at its kind's SQL type.
    changed: a SQL predicate, true on a non-null value that the cast would change (None: the found
      type's every value casts unchanged).
    warn: the found type is another form of the values (text for numbers, ...), so the user is told.
    nonfinite: a SQL predicate, true on a NaN or infinite value, which the expression reads as null (None:
      the found type has no such value).
    """

    column: Column
    found: pa.DataType
    expression: str
    changed: str | None = None
    warn: bool = False
    nonfinite: str | None = None

    @property
    def target(self) -> pa.DataType:
        return CANONICAL_TYPES[self.column.kind]


def found_kind(dtype: pa.DataType) -> str | None:
    """The kind of value an Arrow type holds (integer, float, decimal, string, date, timestamp), or None."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_integer(dtype):
        return INTEGER
    if pa.types.is_floating(dtype):
        return FLOAT
    if pa.types.is_decimal(dtype):
        return DECIMAL
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return STRING
    if pa.types.is_date(dtype):
        return DATE
    if pa.types.is_timestamp(dtype):
        return TIMESTAMP
    return None


def plan_cast(column: Column, found: pa.DataType) -> ColumnCast | None:
    """How ``column`` is read from a parquet column of type ``found``; None when no cast keeps its values.

    A float column's NaN and infinite values are read as null before any cast, so they neither reach the
    readers nor count as values that a cast to an integer or a string would change."""
    name = quote(column.name)
    if found_kind(found) != FLOAT:
        return _plan(column, found, name)
    cast = _plan(column, found, f"(CASE WHEN isfinite({name}) THEN {name} END)")
    if cast is None:
        return None
    changed = cast.changed and f"isfinite({name}) AND ({cast.changed})"
    return replace(cast, changed=changed, nonfinite=f"NOT isfinite({name})")


def _plan(column: Column, found: pa.DataType, value: str) -> ColumnCast | None:
    """:func:`plan_cast` where ``value`` is the SQL of the column's value (the quoted column, or the column with its
    non-finite values read as null)."""
    kind, source = column.kind, found_kind(found)
    target = SQL_TYPES[kind]
    cast = f"CAST({value} AS {target})"
    whole = (f"TRY_CAST({value} AS BIGINT) IS NULL"
             f" OR TRY_CAST({value} AS BIGINT) IS DISTINCT FROM TRY_CAST({value} AS DOUBLE)")
    if pa.types.is_null(found):
        return ColumnCast(column, found, cast, warn=True)
    if source == kind or (kind == FLOAT and source in (INTEGER, DECIMAL)):
        overflow = f"TRY_CAST({value} AS BIGINT) IS NULL" if pa.types.is_uint64(found) else None
        return ColumnCast(column, found, cast, overflow)
    if kind == INTEGER and source in (FLOAT, DECIMAL, STRING):
        return ColumnCast(column, found, cast, whole, warn=True)
    if kind == FLOAT and source == STRING:
        return ColumnCast(column, found, cast, f"TRY_CAST({value} AS DOUBLE) IS NULL", warn=True)
    if kind == STRING and source == INTEGER:
        return ColumnCast(column, found, cast, warn=True)
    if kind == STRING and source in (FLOAT, DECIMAL):
        return ColumnCast(column, found, f"CAST(CAST({value} AS BIGINT) AS VARCHAR)", whole, warn=True)
    if kind == DATE and source in (TIMESTAMP, STRING):
        day = f"TRY_CAST({value} AS DATE)"
        return ColumnCast(column, found, cast, f"{day} IS NULL OR CAST({day} AS TIMESTAMP) IS DISTINCT FROM "
                                               f"TRY_CAST({value} AS TIMESTAMP)", warn=True)
    return None
