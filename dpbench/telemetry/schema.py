"""The reporting schema: the 13 DCA tables, their columns and column types.

One description serves every producer and consumer of the tables: the
simulator writes these columns, a decoder of synthetic data can write them,
the reader (:mod:`dpbench.telemetry.corpus`) presents a directory of parquet
files to the queries at these types, and the benchmark queries read them by
these names.

Each column has a *kind* (string, date, integer, float), the canonical Arrow
type that writers use and the SQL type the queries see. Which found types a
reader accepts for a kind, and how it casts them, is
:mod:`dpbench.telemetry.column_cast`. Only
``system_sysinfo_unique_normalized`` is *required*: it lists the devices (the
wide table has one row per sysinfo device, synthesis samples as many). Every
other table is optional: a device may have no rows in it, so a corpus without
it is read as if no device reported to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

STRING, DATE, INTEGER, FLOAT = "string", "date", "integer", "float"

CANONICAL_TYPES: dict[str, pa.DataType] = {
    STRING: pa.string(),
    DATE: pa.date32(),
    INTEGER: pa.int64(),
    FLOAT: pa.float64(),
}
SQL_TYPES: dict[str, str] = {STRING: "VARCHAR", DATE: "DATE", INTEGER: "BIGINT", FLOAT: "DOUBLE"}
"""The DuckDB type of each kind: what every reader of a corpus sees, whatever the parquet files hold."""


class SchemaError(ValueError):
    """A table is missing or empty, or has a column missing or of a type that cannot be cast losslessly."""


@dataclass(frozen=True)
class Column:
    """One column of a reporting table."""

    name: str
    kind: str


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier (column names such as ``#ofcores`` need it)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableSchema:
    """One reporting table: its name, its grain, its columns in order and whether a corpus must have it."""

    name: str
    grain: str
    columns: tuple[Column, ...]
    required: bool = False

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def arrow_schema(self) -> pa.Schema:
        """The canonical Arrow schema that writers of this table use."""
        return pa.schema([pa.field(c.name, CANONICAL_TYPES[c.kind]) for c in self.columns])

    def empty_sql(self, names: Iterable[str] | None = None) -> str:
        """A SELECT of no rows with the named columns (default all) at their SQL types."""
        columns = self.columns if names is None else [self.column(n) for n in names]
        return f"SELECT {', '.join(f'CAST(NULL AS {SQL_TYPES[c.kind]}) AS {quote(c.name)}' for c in columns)} WHERE false"


def _table(name: str, grain: str, *columns: tuple[str, str], required: bool = False) -> TableSchema:
    return TableSchema(name, grain, tuple(Column(n, k) for n, k in columns), required)


DEVICE_TABLE = "system_sysinfo_unique_normalized"
"""The required table: one row per device, the population every other table's rows belong to."""
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
            DEVICE_TABLE, "guid",
            GUID, ("chassistype", STRING), ("countryname_normalized", STRING), ("modelvendor_normalized", STRING),
            ("model_normalized", STRING), ("ram", FLOAT), ("os", STRING), ("#ofcores", STRING), ("cpuname", STRING),
            ("cpucode", STRING), ("cpu_family", STRING), ("processornumber", STRING), ("persona", STRING),
            required=True,
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
"""The 13 reporting tables, by name (the sysinfo table required, the others optional)."""
