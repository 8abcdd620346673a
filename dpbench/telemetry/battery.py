"""system_batt_dc_events: daily time on battery and power-ons.

A device's mean daily minutes on battery is the product of a country level and
a CPU-group factor, solved so that both published answers hold in
expectation: the mean per country (battery query by geography) and the mean per
CPU group (battery query by generation), given the table's mix of groups.
Power-ons per day are 1 + Poisson around the published country mean.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa

from dpbench.telemetry import world
from dpbench.telemetry.coverage import battery_group_targets
from dpbench.telemetry.population import COUNTRIES, CPU_GROUPS, Population
from dpbench.telemetry.reporting_days import draw_day_counts, expand_days, mean_one_lognormal
from dpbench.telemetry.schema import TABLES

TABLE = "system_batt_dc_events"


def _country_targets(column: str) -> tuple[np.ndarray, np.ndarray]:
    """Published per-country means and battery device counts; unpublished countries get the
    count-weighted mean of the published ones."""
    published = world.TARGETS["battery_by_country"]
    counts = np.array([published.get(c, {}).get("number_of_systems", 0.0) for c in COUNTRIES.values], dtype=float)
    values = np.array([published.get(c, {}).get(column, np.nan) for c in COUNTRIES.values], dtype=float)
    listed = ~np.isnan(values)
    values[~listed] = np.average(values[listed], weights=counts[listed])
    return values, counts


@lru_cache(maxsize=1)
def group_factors() -> np.ndarray:
    """Multiplicative duration factor per CPU group, with mean one over the table's group mix."""
    durations, counts = _country_targets("avg_duration")
    overall = np.average(durations, weights=np.where(counts > 0, counts, world.UNPUBLISHED_STRATUM_CAP))
    share = battery_group_targets() / battery_group_targets().sum()
    factors = np.full(len(CPU_GROUPS.values), np.nan)
    for key, row in world.TARGETS["battery_by_cpugen"].items():
        factors[CPU_GROUPS.index(key)] = row["avg_duration_mins_on_battery"] / overall
    listed = ~np.isnan(factors)
    factors[~listed] = (1 - (share[listed] * factors[listed]).sum()) / share[~listed].sum()
    return np.maximum(factors, 0.05)


def battery_rows(rng: np.random.Generator, pop: Population, devices: np.ndarray) -> pa.Table:
    """Rows for the given devices (indices into the population)."""
    n = len(devices)
    duration_level, _ = _country_targets("avg_duration")
    power_on_level, _ = _country_targets("avg_number_of_dc_powerons")
    country = pop.country[devices]
    device_minutes = (duration_level[country] * group_factors()[pop.cpu_group[devices]]
                      * mean_one_lognormal(rng, world.BATTERY_DEVICE_SIGMA, n))
    device_power_ons = power_on_level[country] * mean_one_lognormal(rng, world.POWER_ONS_DEVICE_SIGMA, n)
    days = expand_days(rng, draw_day_counts(rng, world.VOLUMES[TABLE].rows_per_device, n))
    k = len(days)
    shape = world.BATTERY_DAY_SHAPE
    minutes = np.rint(device_minutes[days.device] * rng.gamma(shape, 1 / shape, k))
    power_ons = 1 + rng.poisson(np.maximum(device_power_ons[days.device] - 1, 0))
    on_avg = np.clip(rng.normal(75, 15, n)[days.device] + rng.normal(0, 8, k), 5, 100)
    off_avg = np.clip(on_avg - minutes / rng.uniform(3, 8, k), 1, on_avg)

    def spread(avg: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array]:
        low = np.clip(avg - rng.uniform(0, 15, k) * (power_ons > 1), 0, 100)
        high = np.clip(avg + rng.uniform(0, 15, k) * (power_ons > 1), 0, 100)
        return tuple(pa.array(np.rint(v).astype(np.int64)) for v in (low, avg, high))

    on_min, on_mean, on_max = spread(on_avg)
    off_min, off_mean, off_max = spread(off_avg)
    columns = {
        "guid": pop.guid.take(pa.array(devices[days.device])),
        "dt": pa.array(days.dt),
        "duration_mins": pa.array(minutes),
        "num_power_ons": pa.array(power_ons.astype(np.int64)),
        "min_power_on_battery_percent": on_min,
        "avg_power_on_battery_percent": on_mean,
        "max_power_on_battery_percent": on_max,
        "min_power_off_battery_percent": off_min,
        "avg_power_off_battery_percent": off_mean,
        "max_power_off_battery_percent": off_max,
    }
    return pa.table(columns, schema=TABLES[TABLE].arrow_schema())
