"""The telemetry simulator: writes the 13 reporting tables as parquet.

    from dpbench.telemetry.simulator import simulate
    report = simulate(n_devices=20_000, out_dir="sim", seed=0)
    report = simulate(20_000, "sim7", seed=0, world=7, rows_scale=10)    # world 7 of the family, 10x rows
    tables_dir = simulated_corpus(20_000, seed=0, root="data_root")   # cached under root/telemetry/

Devices are drawn first (:mod:`~dpbench.telemetry.population`), then each
table's devices (:mod:`~dpbench.telemetry.coverage`), then each table's
(device, day) rows, a chunk of devices at a time so that memory stays bounded.
Output is a deterministic function of (n_devices, seed, world, rows_scale). ``world=None`` (the default)
is the calibrated world of :mod:`~dpbench.telemetry.world`; an int K draws the simulator's parameters
around it (:mod:`~dpbench.telemetry.world_family`); ``rows_scale`` multiplies the (device, day) rows per
device.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dpbench.telemetry import world
from dpbench.telemetry.battery import battery_rows
from dpbench.telemetry.browsing import PIVOT_TABLE, USAGE_TABLE, browsing_rows
from dpbench.telemetry.coverage import draw_coverage
from dpbench.telemetry.hardware import CHASSIS_METRICS, PKG_POWER_TABLE, chassis_metric_rows, pkg_power_rows
from dpbench.telemetry.memory import memory_rows
from dpbench.telemetry.network import network_rows
from dpbench.telemetry.population import Population, draw_population
from dpbench.telemetry.power_states import power_state_rows
from dpbench.telemetry.schema import TABLES
from dpbench.telemetry.world_family import in_world

RowMaker = Callable[[np.random.Generator, Population, np.ndarray], pa.Table]
CHUNK_ROWS = 2_000_000
"""Rows generated per chunk (roughly); part of the generator's definition, so fixed."""


@dataclass(frozen=True)
class RowSource:
    """A generator of the rows of one table (or, for browsing, of two tables from the same rows)."""

    tables: tuple[str, ...]
    make: Callable[[np.random.Generator, Population, np.ndarray], dict[str, pa.Table]]
    sized_by: str
    """The table whose rows per device (in the world simulated) set the chunk size."""

    @property
    def chunk_devices(self) -> int:
        return max(256, int(CHUNK_ROWS / world.VOLUMES[self.sized_by].rows_per_device))


def _single(table: str, maker: RowMaker) -> RowSource:
    return RowSource((table,), lambda rng, pop, dev: {table: maker(rng, pop, dev)}, table)


ROW_SOURCES: tuple[RowSource, ...] = (
    _single("system_network_consumption", network_rows),
    _single("system_memory_utilization", memory_rows),
    *(_single(table, chassis_metric_rows(table)) for table in CHASSIS_METRICS),
    _single(PKG_POWER_TABLE, pkg_power_rows),
    _single("system_batt_dc_events", battery_rows),
    _single("system_on_off_suspend_time_day", power_state_rows),
    RowSource((USAGE_TABLE, PIVOT_TABLE), browsing_rows, USAGE_TABLE),
)


@dataclass
class SimulationReport:
    """What a simulation wrote: rows and devices per table, and the wall time."""

    n_devices: int
    seed: int
    world: int | None = None
    rows_scale: float = 1.0
    rows: dict[str, int] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def simulate(n_devices: int, out_dir: Path | str, seed: int = 0, world: int | None = None,
             rows_scale: float = 1.0) -> SimulationReport:
    """Simulate ``n_devices`` devices of world ``world`` (None: the calibrated one) with ``rows_scale``
    times the rows per device, and write ``out_dir/<table>.parquet`` for all 13 tables."""
    if n_devices < 1:
        raise ValueError(f"n_devices must be at least 1, got {n_devices}")
    with in_world(world, rows_scale):
        return _simulate(SimulationReport(n_devices, seed, world, rows_scale), Path(out_dir))


def _simulate(report: SimulationReport, out_dir: Path) -> SimulationReport:
    n_devices, seed = report.n_devices, report.seed
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    pop = draw_population(np.random.default_rng([seed, 0]), n_devices)
    coverage = draw_coverage(np.random.default_rng([seed, 1]), pop)
    for name, table in (("system_sysinfo_unique_normalized", pop.sysinfo_table()),
                        ("system_cpu_metadata", pop.cpu_metadata_table())):
        pq.write_table(table, out_dir / f"{name}.parquet")
        report.rows[name] = report.devices[name] = n_devices

    for index, source in enumerate(ROW_SOURCES, start=2):
        devices = coverage.members[source.tables[0]]
        writers = {t: pq.ParquetWriter(out_dir / f"{t}.parquet", TABLES[t].arrow_schema()) for t in source.tables}
        try:
            for t in source.tables:
                report.rows[t], report.devices[t] = 0, len(devices)
            chunks = range(0, max(len(devices), 1), source.chunk_devices)
            for chunk_index, lo in enumerate(chunks):
                rng = np.random.default_rng([seed, index, chunk_index])
                for t, rows in source.make(rng, pop, devices[lo:lo + source.chunk_devices]).items():
                    writers[t].write_table(rows)
                    report.rows[t] += rows.num_rows
        finally:
            for writer in writers.values():
                writer.close()
    report.seconds = time.perf_counter() - start
    return report


def simulated_corpus(n_devices: int, seed: int, root: Path | str, world: int | None = None,
                     rows_scale: float = 1.0) -> Path:
    """The directory of the simulated corpus of ``n_devices`` devices (of ``world``, with ``rows_scale``)
    under ``root/telemetry/``, simulated on first use (the output is a deterministic function of these)."""
    name = f"sim_{n_devices}_seed{seed}"
    name += "" if world is None else f"_world{world}"
    name += "" if rows_scale == 1 else f"_rows{rows_scale:g}"
    tables_dir = Path(root).expanduser() / "telemetry" / name
    if tables_dir.exists():
        return tables_dir
    # written beside it and renamed when complete: a killed simulation leaves no corpus that looks whole,
    # and concurrent runs each write their own (the first to finish is kept)
    tables_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{name}.partial-", dir=tables_dir.parent))
    try:
        simulate(n_devices, partial, seed, world, rows_scale)
        partial.rename(tables_dir)
    except OSError:
        if not tables_dir.exists():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return tables_dir
