"""The reporting schema: the 13 DCA tables, their columns and column types.

One description serves every producer and consumer of the tables: the
simulator writes these columns, a decoder of synthetic data can write them,
the reader (:mod:`dpbench.telemetry.corpus`) checks that a directory of parquet
files has them, and the benchmark queries read them by these names.

Each column has a *kind* (string, date, integer, float) and a canonical Arrow
type that writers use. Readers accept any Arrow type of the same kind, so real
tables stored with, say, int32 sample counts or large strings still validate;
a float column also accepts integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

STRING, DATE, INTEGER, FLOAT = "string", "date", "integer", "float"

CANONICAL_TYPES: dict[str, pa.DataType] = {
    STRING: pa.string(),
    DATE: pa.date32(),
    INTEGER: pa.int64(),
    FLOAT: pa.float64(),
}


class SchemaError(ValueError):
    """A table is missing, empty or has a column of the wrong name or type."""


@dataclass(frozen=True)
class Column:
    """One column of a reporting table."""

    name: str
    kind: str


@dataclass(frozen=True)
class TableSchema:
    """One reporting table: its name, its grain and its columns in order."""

    name: str
    grain: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        """The canonical Arrow schema that writers of this table use."""
        return pa.schema([pa.field(c.name, CANONICAL_TYPES[c.kind]) for c in self.columns])

    def validate(self, schema: pa.Schema) -> None:
        """Raise SchemaError naming the table, column and fix if ``schema`` does not fit."""
        for column in self.columns:
            if column.name not in schema.names:
                raise SchemaError(
                    f"table {self.name}: column {column.name!r} is missing (found {schema.names}); "
                    f"add it as a {column.kind} column"
                )
            found = schema.field(column.name).type
            if not _kind_accepts(column.kind, found):
                raise SchemaError(
                    f"table {self.name}: column {column.name!r} has type {found}, expected a "
                    f"{column.kind} column; cast it to {CANONICAL_TYPES[column.kind]} when writing the parquet file"
                )


def _kind_accepts(kind: str, dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if kind == STRING:
        return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
    if kind == DATE:
        return pa.types.is_date(dtype) or pa.types.is_timestamp(dtype)
    if kind == INTEGER:
        return pa.types.is_integer(dtype)
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)


def _table(name: str, grain: str, *columns: tuple[str, str]) -> TableSchema:
    return TableSchema(name, grain, tuple(Column(n, k) for n, k in columns))


GUID = ("guid", STRING)
DT = ("dt", DATE)
NRS = ("nrs", INTEGER)

WEB_CATEGORIES: dict[str, tuple[str, str]] = {
    "content_creation_photo_edit_creation": ("content creation", "photo edit/creation"),
    "content_creation_video_audio_edit_creation": ("content creation", "video/audio edit/creation"),
    "content_creation_web_design_development": ("content creation", "web design / development"),
    "education": ("education", "education"),
    "entertainment_music_audio_streaming": ("entertainment", "music / audio streaming"),
    "entertainment_other": ("entertainment", "other"),
    "entertainment_video_streaming": ("entertainment", "video streaming"),
    "finance": ("finance", "banking and accounting"),
    "games_other": ("games", "other"),
    "games_video_games": ("games", "video games"),
    "mail": ("mail", "mail"),
    "news": ("news", "news"),
    "unclassified": ("other", "unclassified"),
    "private": ("private", "private"),
    "productivity_crm": ("productivity", "crm"),
    "productivity_other": ("productivity", "other"),
    "productivity_presentations": ("productivity", "presentations"),
    "productivity_programming": ("productivity", "programming"),
    "productivity_project_management": ("productivity", "project management"),
    "productivity_spreadsheets": ("productivity", "spreadsheets"),
    "productivity_word_processing": ("productivity", "word processing"),
    "recreation_travel": ("recreation", "travel"),
    "reference": ("reference", "reference"),
    "search": ("search", "search"),
    "shopping": ("shopping", "shopping"),
    "social_social_network": ("social", "social network"),
    "social_communication": ("social", "communication"),
    "social_communication_live": ("social", "communication - live"),
}
"""The 28 browsing categories: pivot column name -> (parent_category, sub_category) in
system_web_cat_usage. The pivot table sums duration_ms of usage rows by (guid, dt) and category."""

TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (
        _table(
            "system_sysinfo_unique_normalized", "guid",
            GUID, ("chassistype", STRING), ("countryname_normalized", STRING), ("modelvendor_normalized", STRING),
            ("model_normalized", STRING), ("ram", FLOAT), ("os", STRING), ("#ofcores", STRING), ("cpuname", STRING),
            ("cpucode", STRING), ("cpu_family", STRING), ("processornumber", STRING), ("persona", STRING),
        ),
        _table(
            "system_cpu_metadata", "guid",
            GUID, ("cpucode", STRING), ("marketsegment", STRING), ("cpugen", STRING), ("marketcodename", STRING),
            ("#ofcores", STRING),
        ),
        _table(
            "system_network_consumption", "guid, dt, input_desc",
            GUID, DT, ("input_desc", STRING), NRS, ("min_bytes_sec", FLOAT), ("avg_bytes_sec", FLOAT),
            ("max_bytes_sec", FLOAT),
        ),
        _table(
            "system_memory_utilization", "guid, dt",
            GUID, DT, NRS, ("avg_free_ram", FLOAT), ("sysinfo_ram", INTEGER), ("utilized_ram", FLOAT),
            ("avg_percentage_used", FLOAT),
        ),
        _table(
            "system_psys_rap_watts", "guid, dt",
            GUID, DT, NRS, ("min_psys_rap_watts", FLOAT), ("avg_psys_rap_watts", FLOAT), ("max_psys_rap_watts", FLOAT),
        ),
        _table(
            "system_pkg_C0", "guid, dt",
            GUID, DT, NRS, ("min_pkg_c0", FLOAT), ("avg_pkg_c0", FLOAT), ("max_pkg_c0", FLOAT),
        ),
        _table(
            "system_pkg_avg_freq_mhz", "guid, dt",
            GUID, DT, NRS, ("min_avg_freq_mhz", FLOAT), ("avg_avg_freq_mhz", FLOAT), ("max_avg_freq_mhz", FLOAT),
        ),
        _table(
            "system_pkg_temp_centigrade", "guid, dt",
            GUID, DT, NRS, ("min_temp_centigrade", FLOAT), ("avg_temp_centigrade", FLOAT),
            ("max_temp_centigrade", FLOAT),
        ),
        _table(
            "system_hw_pkg_power", "guid, dt, instance",
            GUID, DT, ("instance", INTEGER), NRS, ("mean", FLOAT), ("max", FLOAT),
        ),
        _table(
            "system_batt_dc_events", "guid, dt",
            GUID, DT, ("duration_mins", FLOAT), ("num_power_ons", INTEGER),
            ("min_power_on_battery_percent", INTEGER), ("avg_power_on_battery_percent", INTEGER),
            ("max_power_on_battery_percent", INTEGER), ("min_power_off_battery_percent", INTEGER),
            ("avg_power_off_battery_percent", INTEGER), ("max_power_off_battery_percent", INTEGER),
        ),
        _table(
            "system_on_off_suspend_time_day", "guid, dt",
            GUID, DT, ("on_time", FLOAT), ("off_time", FLOAT), ("mods_time", FLOAT), ("sleep_time", FLOAT),
        ),
        _table(
            "system_web_cat_usage", "guid, dt, browser, parent_category, sub_category",
            GUID, DT, ("browser", STRING), ("parent_category", STRING), ("sub_category", STRING),
            ("duration_ms", INTEGER), ("page_load_count", INTEGER), ("site_count", INTEGER),
            ("domain_count", INTEGER), ("page_visit_count", INTEGER),
        ),
        _table(
            "system_web_cat_pivot_duration", "guid, dt",
            GUID, DT, *((c, FLOAT) for c in WEB_CATEGORIES),
        ),
    )
}
"""The 13 reporting tables, by name."""
