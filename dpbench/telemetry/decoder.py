"""Synthetic wide rows -> the 13 reporting tables, so that the benchmark queries run on them unchanged.

Each synthetic device gets a fresh guid and its sysinfo and cpu_metadata rows from its categories.
For every table family it is present in, it gets as many (guid, dt) rows as its decoded day count,
on consecutive days at a random place in the reporting window, and each row's values are drawn
around the device-level value: multiplicative log-normal noise of mean one for rates, counts and
durations, additive noise for percentages, Dirichlet draws around the device's compositions. The
within-device spreads are fixed assumptions (``ROW_SPREAD``), not learned: the wide table keeps one
summary per device, so the row-level spread is the one thing the decoder has to assume. Browsing
usage rows are drawn per day (browser from the device's browsers by its row shares, category from
its time shares) and the pivot table is summed from them, as the reporting pipeline does.
Columns no query reads (min/max, battery percentages, page counts) are filled plausibly.
Devices are decoded and written a chunk at a time, so a million synthetic devices take the memory of a chunk.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dpbench.telemetry import world
from dpbench.telemetry.browsing import BROWSERS, CATEGORIES, PIVOT_TABLE, USAGE_TABLE
from dpbench.telemetry.population import RAM_SIZES_GB, random_guids
from dpbench.telemetry.schema import TABLES, WEB_CATEGORIES
from dpbench.telemetry.wide_table import (
    OTHER,
    POWER_STATES,
    SAMPLES_PER_DAY,
    WIDE_LAYOUT,
    WINDOW_DAYS,
    DecodedDevices,
    decode_columns,
)

ROW_SPREAD = {"nrs": 0.3, "rate": 0.6, "sensor": 0.08, "power": 0.2, "battery": 0.6, "percent": 7.0,
              "states": 20.0, "seconds": 600.0, "browsing": 0.6}
"""Within-device spreads of row values (log-normal sigmas, percentage points, Dirichlet concentration, seconds)."""
CHUNK_DEVICES = 65_536
CHUNK_ROWS = 2_000_000
"""Devices, and (device, day) rows, decoded and written at a time: the decoder's memory grows with the chunk,
not with the devices or their rows."""
_FIRST_DAY = np.datetime64(world.FIRST_DAY, "D")
_RECEIVED, _SENT = "OS:NETWORK INTERFACE::BYTES RECEIVED/SEC::", "OS:NETWORK INTERFACE::BYTES SENT/SEC::"
_SENSOR_TABLES = {"psys": ("system_psys_rap_watts", "psys_rap_watts"), "c0": ("system_pkg_C0", "pkg_c0"),
                  "freq": ("system_pkg_avg_freq_mhz", "avg_freq_mhz"),
                  "temp": ("system_pkg_temp_centigrade", "temp_centigrade")}
_MODEL_SERIES = ("14", "15", "Pro", "Mini", "All-in-One", "Workstation")


class _Rows:
    """The (device, day) rows of one family: ``device[i]`` (index into the devices) and ``dt[i]``."""

    def __init__(self, rng: np.random.Generator, devices: np.ndarray, days: np.ndarray) -> None:
        self.devices = devices
        self.device = np.repeat(devices, days)
        start = rng.integers(0, WINDOW_DAYS - days + 1)
        offsets = np.arange(len(self.device)) - np.repeat(np.cumsum(days) - days, days)
        self.dt = _FIRST_DAY + (np.repeat(start, days) + offsets).astype("timedelta64[D]")
        self.owner = np.repeat(np.arange(len(devices)), days)
        """Index into ``devices`` of each row's device."""

    def __len__(self) -> int:
        return len(self.device)


def _take(guid: pa.Array, index: np.ndarray) -> pa.Array:
    return guid.take(pa.array(index, pa.int64()))


def _lognormal(rng: np.random.Generator, mean: np.ndarray, sigma: float) -> np.ndarray:
    """Draws with the given means and log-sd ``sigma``."""
    return mean * rng.lognormal(-0.5 * sigma**2, sigma, size=len(mean))


def _table(name: str, guid: pa.Array, columns: dict[str, object]) -> pa.Table:
    schema = TABLES[name].arrow_schema()
    data = {"guid": guid, **columns}
    return pa.table({f.name: pa.array(data[f.name], f.type) if not isinstance(data[f.name], pa.Array)
                     else data[f.name] for f in schema}, schema=schema)


def _nrs(rng: np.random.Generator, rows: _Rows, device_nrs: np.ndarray) -> np.ndarray:
    nrs = _lognormal(rng, device_nrs[rows.owner], ROW_SPREAD["nrs"])
    return np.clip(np.rint(nrs), 1, SAMPLES_PER_DAY).astype(np.int64)


def write_tables(features: np.ndarray, out_dir: Path | str, rng: np.random.Generator,
                 chunk_devices: int = CHUNK_DEVICES, chunk_rows: int = CHUNK_ROWS) -> dict[str, int]:
    """Decode wide rows (:func:`.decode_columns`) into ``out_dir/<table>.parquet`` for all 13 tables, a chunk of
    at most ``chunk_devices`` devices and about ``chunk_rows`` rows at a time (a row group per table and chunk);
    returns the row count of each."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(features)
    guid = random_guids(rng, n)
    writers: dict[str, pq.ParquetWriter] = {}
    rows: dict[str, int] = {}
    try:
        for start in range(0, max(n, 1), chunk_devices):
            block = features[start:start + chunk_devices]
            for first, stop in _row_bounded(decode_columns(block), chunk_rows):
                decoded = decode_columns(block[first:stop])
                chunk_guid = guid.slice(start + first, decoded.size)
                tables = {**_device_tables(decoded, chunk_guid, rng), **_family_tables(decoded, chunk_guid, rng)}
                for name, table in tables.items():
                    if name not in writers:
                        writers[name] = pq.ParquetWriter(out_dir / f"{name}.parquet", table.schema)
                    writers[name].write_table(table)
                    rows[name] = rows.get(name, 0) + table.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    return rows


def _row_bounded(decoded: DecodedDevices, chunk_rows: int) -> list[tuple[int, int]]:
    """Consecutive ranges of the devices with about ``chunk_rows`` rows each (a device is never split): a device has a row per day of each table it is in, two for network, and about ``rows_per_day`` browsing
    rows per day."""
    weight = np.ones(decoded.size)
    for family, present in decoded.present.items():
        if family in decoded.days:
            per_day = {"network": 2.0, "browsing": 1.0 + np.maximum(decoded.values["browsing.rows_per_day"], 1.0)
                       }.get(family, 1.0)
            weight += present * decoded.days[family] * per_day
    ends = np.searchsorted(np.cumsum(weight), np.arange(chunk_rows, weight.sum(), chunk_rows), side="right")
    edges = np.unique(np.concatenate([[0], np.maximum(ends, 1), [decoded.size]]))
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)] or [(0, 0)]


def _values_of(layout_name: str) -> tuple[str, ...]:
    return WIDE_LAYOUT.categories[layout_name][0]


def _device_tables(decoded: DecodedDevices, guid: pa.Array, rng: np.random.Generator) -> dict[str, pa.Table]:
    c = decoded.categories
    variants = (*world.CPU_VARIANTS, None)
    cpu = [variants[i] for i in c["cpu"]]

    def attribute(name: str, unknown: str = "Unknown") -> list[str]:
        return [getattr(v, name) if v is not None else unknown for v in cpu]

    codes = [v.codes[rng.integers(len(v.codes))] if v is not None else "Unknown" for v in cpu]
    vendor = np.array(_values_of("vendor"))[c["vendor"]]
    series = np.array(_MODEL_SERIES)[rng.integers(0, len(_MODEL_SERIES), size=len(vendor))]
    cores = attribute("cores")
    sysinfo = {
        "chassistype": np.array(_values_of("chassis"))[c["chassis"]],
        "countryname_normalized": np.array(_values_of("country"))[c["country"]],
        "modelvendor_normalized": vendor,
        "model_normalized": np.char.add(np.char.add(vendor.astype(str), " "), series),
        "ram": RAM_SIZES_GB[c["ram"]],
        "os": np.array(_values_of("os"))[c["os"]],
        "#ofcores": cores, "cpuname": attribute("cpuname", OTHER), "cpucode": codes,
        "cpu_family": attribute("cpu_family"), "processornumber": attribute("lithography"),
        "persona": np.array(_values_of("persona"))[c["persona"]],
    }
    cpu_metadata = {"cpucode": codes, "marketsegment": attribute("segment"), "cpugen": attribute("cpugen"),
                    "marketcodename": attribute("marketcodename"), "#ofcores": cores}
    return {"system_sysinfo_unique_normalized": _table("system_sysinfo_unique_normalized", guid, sysinfo),
            "system_cpu_metadata": _table("system_cpu_metadata", guid, cpu_metadata)}


def _family_rows(decoded: DecodedDevices, family: str, rng: np.random.Generator) -> _Rows:
    devices = np.flatnonzero(decoded.present[family])
    return _Rows(rng, devices, decoded.days[family][devices])


def _family_tables(d: DecodedDevices, guid: pa.Array, rng: np.random.Generator) -> dict[str, pa.Table]:
    v = d.values
    out: dict[str, pa.Table] = {}

    rows = _family_rows(d, "network", rng)
    nrs = _nrs(rng, rows, v["network.nrs"][rows.devices])
    parts = []
    for desc, rate in ((_RECEIVED, "network.received_rate"), (_SENT, "network.sent_rate")):
        avg = _lognormal(rng, v[rate][rows.device], ROW_SPREAD["rate"])
        parts.append((rows.device, rows.dt, np.full(len(rows), desc, dtype=object), nrs, avg))
    device, dt, desc, nrs2, avg = (np.concatenate(x) for x in zip(*parts))
    out["system_network_consumption"] = _table("system_network_consumption", _take(guid, device), {
        "dt": dt, "input_desc": desc, "nrs": nrs2, "min_bytes_sec": 0.1 * avg, "avg_bytes_sec": avg,
        "max_bytes_sec": 3.0 * avg})

    rows = _family_rows(d, "memory", rng)
    ram_mb = (RAM_SIZES_GB[d.categories["ram"]] * 1024).astype(np.int64)[rows.device]
    percent = np.clip(np.rint(v["memory.percent_used"][rows.device]
                              + rng.normal(0, ROW_SPREAD["percent"], len(rows))), 1, 100)
    out["system_memory_utilization"] = _table("system_memory_utilization", _take(guid, rows.device), {
        "dt": rows.dt, "nrs": _nrs(rng, rows, v["memory.nrs"][rows.devices]),
        "avg_free_ram": ram_mb * (1 - percent / 100), "sysinfo_ram": ram_mb,
        "utilized_ram": ram_mb * percent / 100, "avg_percentage_used": percent})

    for family, (table, suffix) in _SENSOR_TABLES.items():
        rows = _family_rows(d, family, rng)
        avg = _lognormal(rng, v[f"{family}.value"][rows.device], ROW_SPREAD["sensor"])
        out[table] = _table(table, _take(guid, rows.device), {
            "dt": rows.dt, "nrs": _nrs(rng, rows, v[f"{family}.nrs"][rows.devices]),
            f"min_{suffix}": 0.6 * avg, f"avg_{suffix}": avg, f"max_{suffix}": 1.4 * avg})

    rows = _family_rows(d, "pkg_power", rng)
    mean = _lognormal(rng, v["pkg_power.value"][rows.device], ROW_SPREAD["power"])
    out["system_hw_pkg_power"] = _table("system_hw_pkg_power", _take(guid, rows.device), {
        "dt": rows.dt, "instance": np.zeros(len(rows), np.int64),
        "nrs": _nrs(rng, rows, v["pkg_power.nrs"][rows.devices]), "mean": mean, "max": 2.0 * mean})

    rows = _family_rows(d, "battery", rng)
    duration = np.rint(_lognormal(rng, v["battery.duration_mins"][rows.device], ROW_SPREAD["battery"]))
    on = rng.integers(20, 101, size=(len(rows), 3))
    off = rng.integers(5, 96, size=(len(rows), 3))
    on.sort(axis=1)
    off.sort(axis=1)
    out["system_batt_dc_events"] = _table("system_batt_dc_events", _take(guid, rows.device), {
        "dt": rows.dt, "duration_mins": duration,
        "num_power_ons": rng.poisson(v["battery.power_ons"][rows.device]).astype(np.int64),
        **{f"{stat}_power_{state}_battery_percent": x[:, i]
           for state, x in (("on", on), ("off", off)) for i, stat in enumerate(("min", "avg", "max"))}})

    rows = _family_rows(d, "power_states", rng)
    total = np.clip(v["power_states.seconds_per_day"][rows.device]
                    + rng.normal(0, ROW_SPREAD["seconds"], len(rows)), 0, 86_400)
    share = rng.gamma(ROW_SPREAD["states"] * d.compositions["power_states.state_share"][rows.device] + 1e-3)
    share /= share.sum(axis=1, keepdims=True)
    out["system_on_off_suspend_time_day"] = _table("system_on_off_suspend_time_day", _take(guid, rows.device), {
        "dt": rows.dt, **{state: np.rint(total * share[:, i]) for i, state in enumerate(POWER_STATES)}})

    out.update(_browsing_tables(d, guid, rng))
    return out


def _browsing_tables(d: DecodedDevices, guid: pa.Array, rng: np.random.Generator) -> dict[str, pa.Table]:
    days = _family_rows(d, "browsing", rng)
    v = d.values
    per_day = np.maximum(1, 1 + rng.poisson(np.maximum(v["browsing.rows_per_day"][days.device] - 1, 0)))
    day_ms = _lognormal(rng, v["browsing.duration_ms_per_day"][days.device], ROW_SPREAD["browsing"])
    day_of_row = np.repeat(np.arange(len(days)), per_day)
    device = days.device[day_of_row]

    uses = np.stack([d.present[f"browser.{b}"] for b in BROWSERS], axis=1)
    row_share = d.compositions["browsing.browser_row_share"] * uses
    row_share[~uses.any(axis=1)] = d.compositions["browsing.browser_row_share"][~uses.any(axis=1)]
    totals = row_share.sum(axis=1, keepdims=True)  # zero only for devices without browsing, whose rows are unused
    row_share = np.divide(row_share, totals, out=np.zeros_like(row_share), where=totals > 0)
    browser = _categorical(rng, row_share[device])
    time_share = d.compositions["browsing.browser_time_share"]
    tilt = np.where(row_share > 0, time_share / np.maximum(row_share, 1e-9), 0.0)
    category = _categorical(rng, d.compositions["browsing.category_share"][device])
    weight = tilt[device, browser] * rng.exponential(size=len(device)) + 1e-9
    weight /= np.bincount(day_of_row, weights=weight)[day_of_row]
    duration = np.maximum(np.rint(day_ms[day_of_row] * weight), 1).astype(np.int64)
    parents = np.array([WEB_CATEGORIES[c][0] for c in CATEGORIES], dtype=object)
    subs = np.array([WEB_CATEGORIES[c][1] for c in CATEGORIES], dtype=object)
    counts = {name: 1 + rng.poisson(1.0, size=len(device)) for name in
              ("page_load_count", "site_count", "domain_count", "page_visit_count")}
    usage = _table(USAGE_TABLE, _take(guid, device), {
        "dt": days.dt[day_of_row], "browser": np.array(BROWSERS, dtype=object)[browser],
        "parent_category": parents[category], "sub_category": subs[category], "duration_ms": duration, **counts})
    pivot_cells = np.bincount(day_of_row * len(CATEGORIES) + category, weights=duration,
                              minlength=len(days) * len(CATEGORIES)).reshape(len(days), len(CATEGORIES))
    pivot = _table(PIVOT_TABLE, _take(guid, days.device), {
        "dt": days.dt, **{c: pivot_cells[:, i] for i, c in enumerate(CATEGORIES)}})
    return {USAGE_TABLE: usage, PIVOT_TABLE: pivot}


def _categorical(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One draw per row of a (n, k) matrix of probabilities."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(len(probabilities)) * cumulative[:, -1]
    return np.minimum((cumulative < u[:, None]).sum(axis=1), probabilities.shape[1] - 1)
