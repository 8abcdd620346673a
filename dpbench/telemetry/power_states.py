"""system_on_off_suspend_time_day: seconds per day on, off, in modern standby and asleep.

Each CPU group has a published mean split of the accounted day (about 83,600 s)
into the four states; a device tilts its group's split (Gamma noise, so states a
group never uses stay at zero) and each day tilts the device's split again.
Groups without a published row use the 'Unknown' group's split.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dpbench.telemetry import world
from dpbench.telemetry.population import CPU_GROUPS, Population
from dpbench.telemetry.reporting_days import draw_day_counts, expand_days
from dpbench.telemetry.schema import TABLES

TABLE = "system_on_off_suspend_time_day"
STATES = ("on_time", "off_time", "mods_time", "sleep_time")
_PUBLISHED = ("avg_on_time", "avg_off_time", "avg_modern_sleep_time", "avg_sleep_time")


def group_profiles() -> tuple[np.ndarray, np.ndarray]:
    """(share of each state, total seconds) per CPU group."""
    published = world.TARGETS["sleep_by_cpugen"]
    rows = [published.get(g, published["Unknown|Unknown"]) for g in CPU_GROUPS.values]
    seconds = np.array([[row[c] for c in _PUBLISHED] for row in rows], dtype=float)
    return seconds / seconds.sum(axis=1, keepdims=True), seconds.sum(axis=1)


def _tilt(rng: np.random.Generator, shares: np.ndarray, concentration: float) -> np.ndarray:
    tilted = shares * rng.gamma(concentration, 1 / concentration, shares.shape)
    return tilted / tilted.sum(axis=1, keepdims=True)


def power_state_rows(rng: np.random.Generator, pop: Population, devices: np.ndarray) -> pa.Table:
    """Rows for the given devices (indices into the population)."""
    shares, totals = group_profiles()
    group = pop.cpu_group[devices]
    device_shares = _tilt(rng, shares[group], world.SLEEP_DEVICE_CONCENTRATION)
    days = expand_days(rng, draw_day_counts(rng, world.VOLUMES[TABLE].rows_per_device, len(devices)))
    day_shares = _tilt(rng, device_shares[days.device], world.SLEEP_DAY_CONCENTRATION)
    total = np.minimum(totals[group][days.device] + world.SLEEP_TOTAL_SD * rng.standard_normal(len(days)), 86_400)
    seconds = np.floor(day_shares * total[:, None])
    columns = {
        "guid": pop.guid.take(pa.array(devices[days.device])),
        "dt": pa.array(days.dt),
        **{state: pa.array(seconds[:, i]) for i, state in enumerate(STATES)},
    }
    return pa.table(columns, schema=TABLES[TABLE].arrow_schema())
