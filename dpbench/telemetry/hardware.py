"""The package telemetry tables: platform power, C0 residency, frequency,
temperature (per chassis) and package power (per country).

Each device's level of a metric is drawn around the published mean of its
chassis (or, for package power, its country); days vary around the device
level, and a day's min and max bracket its average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dpbench.telemetry import world
from dpbench.telemetry.population import CHASSIS, COUNTRIES, Population
from dpbench.telemetry.reporting_days import (
    draw_active_fraction,
    draw_day_counts,
    draw_sample_counts,
    expand_days,
    mean_one_lognormal,
)
from dpbench.telemetry.schema import TABLES


@dataclass(frozen=True)
class ChassisMetric:
    """A hardware table whose daily average is calibrated per chassis."""

    table: str
    target: str
    stem: str
    sigma_key: str
    short: bool
    """Whether the table is one of the three small ones (days capped at ``world.SHORT_TABLE_DAYS_CAP``,
    else at ``world.LONG_TABLE_DAYS_CAP``)."""
    upper_bound: float = np.inf

    @property
    def days_cap(self) -> int:
        return world.SHORT_TABLE_DAYS_CAP if self.short else world.LONG_TABLE_DAYS_CAP


CHASSIS_METRICS: dict[str, ChassisMetric] = {
    m.table: m
    for m in (
        ChassisMetric("system_psys_rap_watts", "avg_psys_rap_watts", "psys_rap_watts", "psys", True),
        ChassisMetric("system_pkg_C0", "avg_pkg_c0", "pkg_c0", "c0", False, 100.0),
        ChassisMetric("system_pkg_avg_freq_mhz", "avg_freq_mhz", "avg_freq_mhz", "freq", True),
        ChassisMetric("system_pkg_temp_centigrade", "avg_temp_centigrade", "temp_centigrade", "temp", True),
    )
}


def chassis_targets(target: str) -> np.ndarray:
    """Published mean of ``target`` for each chassis, similar chassis standing in for unpublished ones."""
    published = world.TARGETS["hardware_by_chassis"]
    return np.array([published[world.HARDWARE_CHASSIS_FALLBACK.get(c, c)][target] for c in CHASSIS.values])


def _min_avg_max(rng: np.random.Generator, avg: np.ndarray, upper: float) -> tuple[np.ndarray, ...]:
    low = avg * rng.uniform(0.3, 0.9, len(avg))
    high = np.minimum(avg * rng.uniform(1.1, 2.0, len(avg)), upper)
    return low, avg, high


def chassis_metric_rows(table: str):
    """The row generator of one chassis-calibrated hardware table."""
    metric = CHASSIS_METRICS[table]

    def rows(rng: np.random.Generator, pop: Population, devices: np.ndarray) -> pa.Table:
        n = len(devices)
        sigma = world.HARDWARE_DEVICE_SIGMA[metric.sigma_key]
        level = chassis_targets(metric.target)[pop.chassis[devices]] * mean_one_lognormal(rng, sigma, n)
        counts = draw_day_counts(rng, world.VOLUMES[table].rows_per_device, n, cap=metric.days_cap)
        days = expand_days(rng, counts)
        avg = np.minimum(level[days.device] * mean_one_lognormal(rng, world.HARDWARE_DAY_SIGMA, len(days)),
                         metric.upper_bound)
        low, avg, high = _min_avg_max(rng, avg, metric.upper_bound)
        columns = {
            "guid": pop.guid.take(pa.array(devices[days.device])),
            "dt": pa.array(days.dt),
            "nrs": pa.array(draw_sample_counts(rng, draw_active_fraction(rng, n), days)),
            f"min_{metric.stem}": pa.array(low),
            f"avg_{metric.stem}": pa.array(avg),
            f"max_{metric.stem}": pa.array(high),
        }
        return pa.table(columns, schema=TABLES[table].arrow_schema())

    return rows


PKG_POWER_TABLE = "system_hw_pkg_power"


def country_power_targets() -> np.ndarray:
    """Published mean package watts per country (median of published countries where unpublished)."""
    published = world.TARGETS["pkg_power_by_country"]
    fallback = float(np.median([v["avg_pkg_power_consumed"] for v in published.values()]))
    return np.array([published.get(c, {}).get("avg_pkg_power_consumed", fallback) for c in COUNTRIES.values])


def pkg_power_rows(rng: np.random.Generator, pop: Population, devices: np.ndarray) -> pa.Table:
    """system_hw_pkg_power rows; a few devices report a second processor instance."""
    n = len(devices)
    level = country_power_targets()[pop.country[devices]] * mean_one_lognormal(rng, world.PKG_POWER_DEVICE_SIGMA, n)
    mean_days = world.VOLUMES[PKG_POWER_TABLE].rows_per_device / (1 + world.PKG_POWER_TWO_SOCKETS)
    days = expand_days(rng, draw_day_counts(rng, mean_days, n))
    nrs = draw_sample_counts(rng, draw_active_fraction(rng, n), days)
    second = (rng.random(n) < world.PKG_POWER_TWO_SOCKETS)[days.device]
    device = np.concatenate([days.device, days.device[second]])
    instance = np.concatenate([np.zeros(len(days), np.int64), np.ones(int(second.sum()), np.int64)])
    dt = np.concatenate([days.dt, days.dt[second]])
    order = np.lexsort((instance, dt, device))
    mean = level[device] * mean_one_lognormal(rng, world.PKG_POWER_DAY_SIGMA, len(device))
    columns = {
        "guid": pop.guid.take(pa.array(devices[device[order]])),
        "dt": pa.array(dt[order]),
        "instance": pa.array(instance[order]),
        "nrs": pa.array(np.concatenate([nrs, nrs[second]])[order]),
        "mean": pa.array(mean[order]),
        "max": pa.array((mean * rng.uniform(1.2, 3.0, len(mean)))[order]),
    }
    return pa.table(columns, schema=TABLES[PKG_POWER_TABLE].arrow_schema())
