"""The wide table: one row per device (guid), the unit of privacy of the telemetry DP-VAE.

A device's row holds its attributes one-hot (chassis, country, vendor, OS, persona, RAM, CPU), and
for each of the ten (guid, dt) table families (network, memory, the four package sensors, package
power, battery, power states, browsing) a presence bit, a day count and a few device-level summaries
of the table's values: nrs-weighted means of the values the queries read, and compositions (shares
of browsing time per category and per browser, shares of the day per power state).

Nothing here is estimated from the data, so building the table spends no privacy: vocabularies are
the schema's and the simulator's public catalogue (matched up to case and surrounding spaces; values
outside them fall into an "Other" slot, with a warning when they are most of a column's values, RAM to the
nearest listed size), and every numeric column is scaled by a fixed transform named after
its unit (``log1p(x) / scale`` for heavy-tailed counts, rates and durations, ``x / scale`` for
bounded ones). The layout (:data:`WIDE_LAYOUT`) is therefore a constant, which lets a model be built
before the data is read, and lets :func:`decode_columns` invert any row, real or synthetic.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dpbench.telemetry import world
from dpbench.telemetry.benchmark_queries import BENCHMARK
from dpbench.telemetry.browsing import BROWSERS, CATEGORIES
from dpbench.telemetry.corpus import CorpusWarning
from dpbench.telemetry.population import CHASSIS, COUNTRIES, OPERATING_SYSTEMS, PERSONAS, RAM_SIZES_GB, VENDORS
from dpbench.telemetry.schema import DEVICE_TABLE, SchemaError, quote
from dpbench.telemetry.stage_memory import stage
from dpbench.telemetry.wide_table_sql import PER_DEVICE_SQL, POWER_STATES, WIDE_TABLE_SQL

if TYPE_CHECKING:
    import duckdb

OTHER = "Other"
WINDOW_DAYS = world.WINDOW_DAYS
SAMPLES_PER_DAY = world.SAMPLES_PER_DAY
SECONDS_PER_DAY = 86_400.0
CPU_KEYS = tuple(f"{v.cpuname}|{v.cpugen}|{v.marketcodename}" for v in world.CPU_VARIANTS)
"""The CPU vocabulary: (sysinfo cpuname, cpu_metadata cpugen, marketcodename) of each catalogue entry."""

FAMILIES = ("network", "memory", "psys", "c0", "freq", "temp", "pkg_power", "battery", "power_states", "browsing")
"""The ten (guid, dt) table families; browsing covers system_web_cat_usage and its pivot."""


@dataclass(frozen=True)
class Scale:
    """A fixed transform of one numeric column: ``log1p(x) / scale`` if ``log`` else ``x / scale``;
    ``upper`` is the column's physical upper bound, which decoded values are clipped to."""

    scale: float
    upper: float
    log: bool = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(x, 0.0)) / self.scale if self.log else x / self.scale

    def inverse(self, y: np.ndarray) -> np.ndarray:
        x = np.expm1(np.clip(y * self.scale, 0.0, 700.0)) if self.log else np.maximum(y, 0.0) * self.scale
        return np.minimum(x, self.upper)


DAYS = Scale(float(np.log1p(WINDOW_DAYS)), WINDOW_DAYS)
NRS = Scale(float(np.log1p(SAMPLES_PER_DAY)), SAMPLES_PER_DAY)
BYTES_PER_SECOND = Scale(25.0, 1e11)
WATTS = Scale(6.0, 1000.0)
VALUES: dict[str, dict[str, Scale]] = {
    "network": {"nrs": NRS, "received_rate": BYTES_PER_SECOND, "sent_rate": BYTES_PER_SECOND},
    "memory": {"nrs": NRS, "percent_used": Scale(100.0, 100.0, log=False)},
    "psys": {"nrs": NRS, "value": WATTS},
    "c0": {"nrs": NRS, "value": Scale(100.0, 100.0, log=False)},
    "freq": {"nrs": NRS, "value": Scale(5000.0, 6000.0, log=False)},
    "temp": {"nrs": NRS, "value": Scale(100.0, 110.0, log=False)},
    "pkg_power": {"nrs": NRS, "value": WATTS},
    "battery": {"duration_mins": Scale(float(np.log1p(1440)), 1440.0), "power_ons": Scale(5.0, 100.0)},
    "power_states": {"seconds_per_day": Scale(SECONDS_PER_DAY, SECONDS_PER_DAY, log=False)},
    "browsing": {"rows_per_day": Scale(5.0, float(3 * 28)),
                 "duration_ms_per_day": Scale(float(np.log1p(1000 * SECONDS_PER_DAY)), 1000 * SECONDS_PER_DAY)},
}
"""Per family, its value columns and their fixed transforms (units: samples per day, bytes/s, %, W, MHz, C,
minutes, s, ms; browsing rows per day are at most 3 browsers x 28 categories)."""
COMPOSITIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "power_states": {"state_share": POWER_STATES},
    "browsing": {"browser_row_share": BROWSERS, "browser_time_share": BROWSERS, "category_share": CATEGORIES},
}
"""Per family, its compositions (non-negative parts that sum to one)."""


@dataclass(frozen=True)
class WideLayout:
    """Where each feature lives in a wide row.

    categories: name -> (values, slice) of each one-hot attribute.
    bits: name -> (column, gate) of each 0/1 feature; gate is the presence column it depends on, or None.
    gaussians: name -> (column, gate, scale) of each day count and value summary (gate: its presence bit).
    compositions: name -> (parts, slice, gate) of each composition.
    """

    categories: dict[str, tuple[tuple[str, ...], slice]] = field(default_factory=dict)
    bits: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    gaussians: dict[str, tuple[int, int, Scale]] = field(default_factory=dict)
    compositions: dict[str, tuple[tuple[str, ...], slice, int]] = field(default_factory=dict)
    width: int = 0
    names: tuple[str, ...] = ()


def _build_layout() -> WideLayout:
    names: list[str] = []

    def take(*new: str) -> slice:
        start = len(names)
        names.extend(new)
        return slice(start, len(names))

    layout = WideLayout()
    for name, values in (("chassis", CHASSIS.values), ("country", COUNTRIES.values), ("vendor", VENDORS.values),
                         ("os", OPERATING_SYSTEMS.values), ("persona", PERSONAS.values),
                         ("ram", tuple(f"{g:g}" for g in RAM_SIZES_GB)), ("cpu", CPU_KEYS)):
        values = values if OTHER in values or name == "ram" else (*values, OTHER)
        layout.categories[name] = (values, take(*(f"{name}={v}" for v in values)))
    for family in FAMILIES:
        presence = take(f"{family}.present").start
        layout.bits[f"{family}.present"] = (presence, None)
        layout.gaussians[f"{family}.days"] = (take(f"{family}.days").start, presence, DAYS)
        for value, scale in VALUES[family].items():
            layout.gaussians[f"{family}.{value}"] = (take(f"{family}.{value}").start, presence, scale)
        for composition, parts in COMPOSITIONS.get(family, {}).items():
            layout.compositions[f"{family}.{composition}"] = (
                parts, take(*(f"{family}.{composition}={p}" for p in parts)), presence)
    browsing = layout.bits["browsing.present"][0]
    for browser in BROWSERS:
        layout.bits[f"browser.{browser}"] = (take(f"browser.{browser}").start, browsing)
    return WideLayout(layout.categories, layout.bits, layout.gaussians, layout.compositions, len(names), tuple(names))


WIDE_LAYOUT = _build_layout()
"""The layout of every wide table (a constant: see the module docstring)."""


_COMPOSITION_SOURCES = {
    "power_states.state_share": POWER_STATES,
    "browsing.browser_row_share": tuple(f"rows_{b}" for b in BROWSERS),
    "browsing.browser_time_share": tuple(f"ms_{b}" for b in BROWSERS),
    "browsing.category_share": CATEGORIES,
}


@dataclass(frozen=True)
class WideTable:
    """The wide rows of a corpus: ``features[i]`` is the device ``guids[i]``."""

    guids: np.ndarray
    features: np.ndarray


def build_wide_table(tables_dir: Path | str, layout: WideLayout = WIDE_LAYOUT) -> WideTable:
    """One wide row per sysinfo device of a directory of reporting tables (read by :func:`.corpus.open_corpus`:
    a missing optional table leaves its block empty, i.e. no device is present in it)."""
    with stage("wide table"):
        return _build(tables_dir, layout)


def _build(tables_dir: Path | str, layout: WideLayout) -> WideTable:
    from dpbench.telemetry.query_runner import connect  # DuckDB only when a corpus is read
    con = connect(tables_dir, BENCHMARK)
    try:
        con.execute(f"CREATE TEMP TABLE {_DEVICES} AS SELECT row_number() OVER (ORDER BY guid) - 1 AS row, * "
                    f"FROM ({WIDE_TABLE_SQL['devices']})")
        n = _check_devices(con)
        features = np.zeros((n, layout.width), dtype=np.float32)
        unmatched = {name: _Unmatched() for name in layout.categories if name != "ram"}
        for batch in _batches(con, f"SELECT row, {', '.join(layout.categories)} FROM {_DEVICES}"):
            for name, (values, columns) in layout.categories.items():
                codes = _category_codes(name, batch[name], values)
                features[batch["row"], columns.start + codes] = 1.0
                if name in unmatched:
                    unmatched[name].add(batch[name], codes == values.index(OTHER))
        for name, tally in unmatched.items():
            tally.warn_if_most(name, layout.categories[name][0])
        for family in PER_DEVICE_SQL:
            with stage(f"wide table: {family}"):
                _fill_family(con, family, features, layout)
        guids = con.sql(f"SELECT guid FROM {_DEVICES} ORDER BY row").fetchnumpy()["guid"]
    finally:
        con.close()
    return WideTable(np.asarray(guids, dtype=object), features)


def _check_devices(con: duckdb.DuckDBPyConnection) -> int:
    """The number of devices, after refusing rows without a guid and guids listed twice (either would make a
    device's row ambiguous)."""
    n, named, distinct = con.sql(f"SELECT COUNT(*), COUNT(guid), COUNT(DISTINCT guid) FROM {_DEVICES}").fetchall()[0]
    problems = []
    if n != named:
        problems.append(f"{n - named:,d} rows of {DEVICE_TABLE} have no guid; every device needs one: fill in the "
                        "guid or remove the rows")
    if named != distinct:
        problems.append(f"{named - distinct:,d} devices of {DEVICE_TABLE} appear more than once (in it or in "
                        "system_cpu_metadata); each table lists a device (guid) once: remove the duplicates")
    if problems:
        raise SchemaError("\n".join(problems))
    return n


_DEVICES = "wide_table_devices"
"""The temporary table of the devices with their row in the wide table (rows in guid order)."""
BATCH_ROWS = 262_144
"""Rows of a DuckDB result read into Python at a time."""


def _batches(con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[dict[str, np.ndarray]]:
    """The result of ``sql`` in batches of :data:`BATCH_ROWS` rows, as numpy columns (nulls as None or NaN)."""
    reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
    for batch in reader:
        yield {name: column.to_numpy(zero_copy_only=False) for name, column in zip(batch.schema.names, batch.columns)}


def _fill_family(con: duckdb.DuckDBPyConnection, family: str, features: np.ndarray, layout: WideLayout) -> None:
    """Write one family's block of the wide rows from its per-device query, joined to the devices' rows in DuckDB
    (a device of the family that sysinfo does not list has no row and is left out)."""
    gaussians = {name: spec for name, spec in layout.gaussians.items() if name.startswith(f"{family}.")}
    compositions = {name: spec for name, spec in layout.compositions.items() if name.startswith(f"{family}.")}
    browsers = tuple(f"rows_{b}" for b in BROWSERS) if family == "browsing" else ()
    sources = dict.fromkeys([name.split(".", 1)[1] for name in gaussians]
                            + [c for name in compositions for c in _COMPOSITION_SOURCES[name]] + list(browsers))
    select = ", ".join(f"CAST(f.{quote(c)} AS DOUBLE) AS {quote(c)}" for c in sources)
    sql = f"SELECT d.row, {select} FROM ({WIDE_TABLE_SQL[family]}) f JOIN {_DEVICES} d ON f.guid = d.guid"
    for batch in _batches(con, sql):
        rows = batch["row"]
        values = {c: np.nan_to_num(batch[c].astype(np.float64), nan=0.0) for c in sources}
        features[rows, layout.bits[f"{family}.present"][0]] = 1.0
        for name, (column, _, scale) in gaussians.items():
            features[rows, column] = scale.forward(values[name.split(".", 1)[1]])
        for name, (_, columns, _) in compositions.items():
            parts = np.stack([values[c] for c in _COMPOSITION_SOURCES[name]], axis=1)
            total = parts.sum(axis=1, keepdims=True)
            features[rows, columns] = np.where(total > 0, parts / np.where(total > 0, total, 1.0), 0.0)
        for browser, source in zip(BROWSERS, browsers):
            features[rows, layout.bits[f"browser.{browser}"][0]] = values[source] > 0


def _category_codes(name: str, column: np.ndarray, values: tuple[str, ...]) -> np.ndarray:
    """Each device's index into ``values`` (RAM: the nearest listed size, 8 GB if unknown; others: "Other" if
    unknown or unlisted, matched up to case and surrounding spaces)."""
    if name == "ram":
        sizes = np.nan_to_num(np.asarray(column, dtype=float), nan=8.0)
        distance = np.abs(np.log2(np.maximum(sizes, 0.5))[:, None] - np.log2(RAM_SIZES_GB)[None, :])
        return distance.argmin(axis=1)
    index = {_spelling(v): i for i, v in enumerate(values)}
    other = index[_spelling(OTHER)]
    return np.fromiter((index.get(_spelling(v), other) for v in column), dtype=np.int64, count=len(column))


def _spelling(value: object) -> object:
    """A category value as compared: each ``|``-separated part (the CPU key joins three columns) stripped and
    case-folded, since exports spell the same value 'Notebook', 'notebook' or ' Notebook '; None stays None."""
    return value if value is None else "|".join(p.strip().casefold() for p in str(value).split("|"))


@dataclass
class _Unmatched:
    """A categorical column's values that match no listed value (coded "Other"), counted over batches."""

    present: int = 0
    examples: Counter = field(default_factory=Counter)

    def add(self, column: np.ndarray, other: np.ndarray) -> None:
        named = np.array([v is not None for v in column], dtype=bool)
        self.present += int(named.sum())
        self.examples.update(v for v in column[named & other] if _spelling(v) != _spelling(OTHER))

    def warn_if_most(self, name: str, values: tuple[str, ...]) -> None:
        """Warn when more than half of the non-null values are unlisted: a column spelled in another vocabulary
        (codes for names, another language) would otherwise train the model on one "Other" slot in silence."""
        count = sum(self.examples.values())
        if count * 2 <= self.present:
            return
        shown = ", ".join(repr(v) for v, _ in self.examples.most_common(3))
        listed = ", ".join(values[:_LISTED]) + (f", ... ({len(values)} in all)" if len(values) > _LISTED else "")
        warnings.warn(f"wide table: {count:,d} of {self.present:,d} values of {name} ({_CATEGORY_SOURCES[name]}) match "
                      f"no listed value and are read "
                      f"as {OTHER} (e.g. {shown}); listed values: {listed}; write them in the listed spelling to "
                      "keep them apart", CorpusWarning, stacklevel=2)


_LISTED = 8
"""How many listed values a warning about unlisted ones names."""
_CATEGORY_SOURCES = {"chassis": "sysinfo chassistype", "country": "sysinfo countryname_normalized",
                     "vendor": "sysinfo modelvendor_normalized", "os": "sysinfo os", "persona": "sysinfo persona",
                     "cpu": "sysinfo cpuname|system_cpu_metadata cpugen|marketcodename"}


@dataclass
class DecodedDevices:
    """Wide rows turned back into units: category codes, presence, day counts, values and compositions."""

    categories: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    days: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    compositions: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        return len(next(iter(self.categories.values())))


def decode_columns(features: np.ndarray, layout: WideLayout = WIDE_LAYOUT) -> DecodedDevices:
    """Invert the wide-table transforms.

    A category is its largest one-hot cell; a bit is set when its cell is positive (a model that
    samples writes exact 0/1; a model that decodes means leaves small positive values, which count as
    present: the published pipeline's rule that a non-zero cell is data); a present device has at
    least one day (at most the reporting window); compositions are clipped at zero and renormalised.
    """
    categories = {name: features[:, columns].argmax(axis=1) for name, (_, columns) in layout.categories.items()}
    present = {name.split(".")[0] if name.endswith(".present") else name: features[:, column] > 0
               for name, (column, _) in layout.bits.items()}
    days, values = {}, {}
    for name, (column, _, scale) in layout.gaussians.items():
        decoded = scale.inverse(features[:, column].astype(np.float64))
        if name.endswith(".days"):
            days[name.split(".")[0]] = np.clip(np.rint(decoded), 1, WINDOW_DAYS).astype(np.int64)
        else:
            values[name] = decoded
    compositions = {}
    for name, (_, columns, _) in layout.compositions.items():
        parts = np.maximum(features[:, columns].astype(np.float64), 0.0)
        total = parts.sum(axis=1, keepdims=True)
        compositions[name] = np.where(total > 0, parts / np.where(total > 0, total, 1.0), 1.0 / parts.shape[1])
    return DecodedDevices(categories, present, days, values, compositions)
