"""system_memory_utilization: daily RAM use of each device.

A device's mean utilisation is drawn around the published mean for its RAM
size; days vary around the device mean. Free and utilised MB follow from the
percentage and the device's RAM (sysinfo_ram = ram * 1024), as in the reporting
pipeline; avg_percentage_used is the rounded percentage.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dpbench.telemetry import world
from dpbench.telemetry.population import Population
from dpbench.telemetry.reporting_days import draw_active_fraction, draw_day_counts, draw_sample_counts, expand_days
from dpbench.telemetry.schema import TABLES

TABLE = "system_memory_utilization"


def memory_rows(rng: np.random.Generator, pop: Population, devices: np.ndarray) -> pa.Table:
    """Rows for the given devices (indices into the population)."""
    n = len(devices)
    ram_gb = pop.ram_gb[devices]
    hist = world.TARGETS["ram_histogram"]
    target = np.array([hist[f"{g:g}"]["avg_percentage_used"] for g in ram_gb], dtype=float)
    device_mean = np.clip(target + world.RAM_DEVICE_SD * rng.standard_normal(n), 1.0, 99.0)
    days = expand_days(rng, draw_day_counts(rng, world.VOLUMES[TABLE].rows_per_device, n))
    percent = np.clip(device_mean[days.device] + world.RAM_DAY_SD * rng.standard_normal(len(days)), 0.0, 100.0)
    sysinfo_ram = np.rint(ram_gb * 1024).astype(np.int64)[days.device]
    free = sysinfo_ram * (1 - percent / 100)
    utilized = sysinfo_ram - free
    columns = {
        "guid": pop.guid.take(pa.array(devices[days.device])),
        "dt": pa.array(days.dt),
        "nrs": pa.array(draw_sample_counts(rng, draw_active_fraction(rng, n), days)),
        "avg_free_ram": pa.array(free),
        "sysinfo_ram": pa.array(sysinfo_ram),
        "utilized_ram": pa.array(utilized),
        "avg_percentage_used": pa.array(np.rint(utilized * 100 / sysinfo_ram)),
    }
    return pa.table(columns, schema=TABLES[TABLE].arrow_schema())
