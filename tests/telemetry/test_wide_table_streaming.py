"""The wide table built by DuckDB queries streaming over the parquet files equals a straightforward pandas
computation over the whole tables, on a corpus with what real tables have: parts in folders, several rows of a
device on one day, nulls, rows of devices that sysinfo does not list."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpbench.telemetry.browsing import BROWSERS, CATEGORIES
from dpbench.telemetry.decoder import write_tables
from dpbench.telemetry.population import RAM_SIZES_GB
from dpbench.telemetry.schema import SchemaError
from dpbench.telemetry.simulator import simulate
from dpbench.telemetry.wide_table import OTHER, WIDE_LAYOUT, build_wide_table, decode_columns
from dpbench.telemetry.wide_table_sql import POWER_STATES

SENSORS = {"psys": ("system_psys_rap_watts", "avg_psys_rap_watts"), "c0": ("system_pkg_C0", "avg_pkg_c0"),
           "freq": ("system_pkg_avg_freq_mhz", "avg_avg_freq_mhz"),
           "temp": ("system_pkg_temp_centigrade", "avg_temp_centigrade"),
           "pkg_power": ("system_hw_pkg_power", "mean"), "memory": ("system_memory_utilization", "avg_percentage_used")}


def _read(corpus: Path, table: str) -> pd.DataFrame:
    path = corpus / f"{table}.parquet"
    return pq.read_table(path if path.exists() else corpus / table).to_pandas()


def _write_parts(corpus: Path, table: str, frame: pd.DataFrame, parts: int = 3) -> None:
    """Replace ``table`` by a folder of ``parts`` parquet files (nested one level), with the schema it had."""
    path = corpus / f"{table}.parquet"
    schema = pq.read_schema(path)
    path.unlink()
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        (corpus / table / f"part={i}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame.iloc[chunk], schema=schema, preserve_index=False),
                       corpus / table / f"part={i}" / "data.parquet")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 simulated devices, then: tables in parts; some rows repeated on their day with other values;
    nulls in read columns; rows of a device sysinfo does not list."""
    out = tmp_path_factory.mktemp("streaming")
    simulate(3_000, out, seed=3)
    rng = np.random.default_rng(0)
    stranger = "f" * 32
    for table in ("system_memory_utilization", "system_network_consumption", "system_batt_dc_events",
                  "system_on_off_suspend_time_day", "system_web_cat_pivot_duration", "system_web_cat_usage"):
        frame = _read(out, table)
        again = frame.sample(frac=0.2, random_state=1).copy()  # a second row of the device on that day
        for column in again.columns:
            if column not in ("guid", "dt", "input_desc", "browser") and pd.api.types.is_numeric_dtype(again[column]):
                again[column] = again[column] * rng.uniform(0.5, 1.5, len(again))
                if pd.api.types.is_integer_dtype(frame[column]):
                    again[column] = again[column].round().astype(frame[column].dtype)
        stray = frame.head(5).copy()
        stray["guid"] = stranger
        frame = pd.concat([frame, again, stray], ignore_index=True)
        for column in [c for c in frame.columns if c not in ("guid", "dt")][:3]:
            frame[column] = frame[column].astype(object).where(rng.random(len(frame)) > 0.05, None)
        _write_parts(out, table, frame)
    return out


def _weighted(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    frame = frame.assign(weighted=frame["nrs"] * frame[column])
    g = frame.groupby("guid")
    nrs_total = g["nrs"].sum(min_count=1).replace(0, np.nan)
    return pd.DataFrame({"days": g["dt"].nunique(), "nrs": g["nrs"].mean(),
                         "value": g["weighted"].sum(min_count=1) / nrs_total})


def _expected(corpus: Path) -> tuple[np.ndarray, np.ndarray]:
    """The wide rows computed directly in pandas from whole tables (what the streaming build must equal)."""
    layout = WIDE_LAYOUT
    sysinfo = _read(corpus, "system_sysinfo_unique_normalized")
    cpu = _read(corpus, "system_cpu_metadata")
    devices = sysinfo.merge(cpu[["guid", "cpugen", "marketcodename"]], on="guid", how="left").sort_values("guid")
    guids = devices["guid"].to_numpy()
    row = {g: i for i, g in enumerate(guids)}
    features = np.zeros((len(devices), layout.width), dtype=np.float32)
    attributes = {"chassis": devices["chassistype"], "country": devices["countryname_normalized"],
                  "vendor": devices["modelvendor_normalized"], "os": devices["os"], "persona": devices["persona"],
                  "cpu": devices["cpuname"] + "|" + devices["cpugen"].fillna("") + "|"
                  + devices["marketcodename"].fillna("")}
    for name, (values, columns) in layout.categories.items():
        if name == "ram":
            sizes = devices["ram"].astype(float).fillna(8.0).to_numpy()
            code = np.array([np.argmin(np.abs(np.log2(max(s, 0.5)) - np.log2(RAM_SIZES_GB))) for s in sizes])
        else:
            code = np.array([values.index(v) if v in values else values.index(OTHER) for v in attributes[name]])
        features[np.arange(len(devices)), columns.start + code] = 1.0

    summaries: dict[str, pd.DataFrame] = {}
    for family, (table, column) in SENSORS.items():
        summaries[family] = _weighted(_read(corpus, table), column)
    summaries["memory"] = summaries["memory"].rename(columns={"value": "percent_used"})
    net = _read(corpus, "system_network_consumption")
    g = net.groupby("guid")
    summary = pd.DataFrame({"days": g["dt"].nunique(), "nrs": g["nrs"].mean()})
    for side, desc in (("received", "RECEIVED"), ("sent", "SENT")):
        part = net[net["input_desc"] == f"OS:NETWORK INTERFACE::BYTES {desc}/SEC::"]
        part = part.assign(weighted=part["nrs"] * part["avg_bytes_sec"]).groupby("guid")
        summary[f"{side}_rate"] = (part["weighted"].sum(min_count=1) / part["nrs"].sum(min_count=1)).fillna(0.0)
    summaries["network"] = summary
    battery = _read(corpus, "system_batt_dc_events").groupby("guid")
    summaries["battery"] = pd.DataFrame({"days": battery["dt"].nunique(), "duration_mins": battery["duration_mins"]
                                         .mean(), "power_ons": battery["num_power_ons"].mean()})
    states = _read(corpus, "system_on_off_suspend_time_day")
    states["total"] = states[list(POWER_STATES)].astype(float).sum(axis=1, skipna=False)
    g = states.groupby("guid")
    summaries["power_states"] = pd.DataFrame({"days": g["dt"].nunique(), "seconds_per_day": g["total"].mean(),
                                              **{s: g[s].sum(min_count=1) for s in POWER_STATES}})
    pivot = _read(corpus, "system_web_cat_pivot_duration").groupby("guid")
    usage = _read(corpus, "system_web_cat_usage")
    per_browser = {}
    for b in BROWSERS:
        mine = usage[usage["browser"] == b].groupby("guid")["duration_ms"]
        per_browser[f"rows_{b}"] = mine.size()
        per_browser[f"ms_{b}"] = mine.sum()
    u = usage.groupby("guid")
    browsing = pd.DataFrame({"days": pivot["dt"].nunique(), **{c: pivot[c].sum(min_count=1) for c in CATEGORIES}}
                            ).join(pd.DataFrame({"usage_rows": u.size(), "duration_ms": u["duration_ms"].sum(),
                                                 **per_browser}), how="inner")
    browsing[list(per_browser)] = browsing[list(per_browser)].fillna(0)
    browsing["rows_per_day"] = browsing["usage_rows"] / browsing["days"]
    browsing["duration_ms_per_day"] = browsing["duration_ms"] / browsing["days"]
    summaries["browsing"] = browsing

    sources = {"power_states.state_share": list(POWER_STATES),
               "browsing.browser_row_share": [f"rows_{b}" for b in BROWSERS],
               "browsing.browser_time_share": [f"ms_{b}" for b in BROWSERS],
               "browsing.category_share": list(CATEGORIES)}
    for family, summary in summaries.items():
        summary = summary[summary.index.isin(row)]
        rows = np.array([row[g] for g in summary.index])
        features[rows, layout.bits[f"{family}.present"][0]] = 1.0
        for name, (column, _, scale) in layout.gaussians.items():
            if name.startswith(f"{family}."):
                features[rows, column] = scale.forward(summary[name.split(".", 1)[1]].astype(float).fillna(0.0)
                                                       .to_numpy())
        for name, (_, columns, _) in layout.compositions.items():
            if name.startswith(f"{family}."):
                parts = summary[sources[name]].astype(float).fillna(0.0).to_numpy()
                total = parts.sum(axis=1, keepdims=True)
                features[rows, columns] = np.where(total > 0, parts / np.where(total > 0, total, 1.0), 0.0)
        if family == "browsing":
            for b in BROWSERS:
                features[rows, layout.bits[f"browser.{b}"][0]] = summary[f"rows_{b}"].to_numpy() > 0
    return guids, features


def test_streaming_build_equals_a_direct_computation(corpus):
    guids, expected = _expected(corpus)
    wide = build_wide_table(corpus)
    assert list(wide.guids) == list(guids) and "f" * 32 not in set(wide.guids)
    assert wide.features.dtype == np.float32
    for family in ("memory", "network", "battery", "power_states", "browsing"):  # the damage reached each block
        assert wide.features[:, WIDE_LAYOUT.bits[f"{family}.present"][0]].sum() > 10, family
    mismatch = ~np.isclose(wide.features, expected, rtol=1e-6, atol=1e-6)
    assert not mismatch.any(), [WIDE_LAYOUT.names[c] for c in np.unique(np.nonzero(mismatch)[1])]


def test_a_device_listed_twice_is_refused_naming_the_table(corpus, tmp_path):
    copy = tmp_path / "twice"
    shutil.copytree(corpus, copy)
    sysinfo = _read(copy, "system_sysinfo_unique_normalized")
    schema = pq.read_schema(copy / "system_sysinfo_unique_normalized.parquet")
    pq.write_table(pa.Table.from_pandas(pd.concat([sysinfo, sysinfo.head(2)]), schema=schema, preserve_index=False),
                   copy / "system_sysinfo_unique_normalized.parquet")
    with pytest.raises(SchemaError, match="2 devices of system_sysinfo_unique_normalized appear more than once"):
        build_wide_table(copy)


def test_decoding_in_chunks_writes_every_day_of_every_device(corpus, tmp_path):
    features = build_wide_table(corpus).features
    decoded = decode_columns(features)
    counts = {chunk: write_tables(features, tmp_path / str(chunk), np.random.default_rng(1), chunk_devices=chunk,
                                  chunk_rows=rows)
              for chunk, rows in ((len(features), 10**9), (7 * 64, 5_000))}
    for table, family, per_day in (("system_memory_utilization", "memory", 1), ("system_batt_dc_events", "battery", 1),
                                   ("system_network_consumption", "network", 2),
                                   ("system_web_cat_pivot_duration", "browsing", 1)):
        days = int(decoded.days[family][decoded.present[family]].sum()) * per_day
        assert counts[len(features)][table] == counts[7 * 64][table] == days, table
        assert pq.read_metadata(tmp_path / "448" / f"{table}.parquet").num_rows == days
    chunks = pq.read_metadata(tmp_path / "448" / "system_sysinfo_unique_normalized.parquet").num_row_groups
    assert chunks > -(-len(features) // 448)  # more chunks than by devices alone: some were bounded by their rows
    assert pq.read_metadata(tmp_path / str(len(features)) / "system_web_cat_usage.parquet").num_row_groups == 1
