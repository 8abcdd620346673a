"""system_network_consumption: bytes received and sent per device and day.

Each device has a received and a sent byte rate (correlated log-normals, heavy
tailed); a day has a 'received' row and usually a 'sent' row sharing that
day's sample count nrs. The rate scale of each (processor class, OS) stratum is
set so that the expected nrs-weighted mean of per-device total bytes equals the
published answer of the Xeon query for that stratum.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa

from dpbench.telemetry import world
from dpbench.telemetry.population import OPERATING_SYSTEMS, PROCESSOR_CLASSES, Population
from dpbench.telemetry.reporting_days import (
    draw_active_fraction,
    draw_day_counts,
    draw_sample_counts,
    expand_days,
    mean_one_lognormal,
)
from dpbench.telemetry.schema import TABLES

TABLE = "system_network_consumption"
RECEIVED = "OS:NETWORK INTERFACE::BYTES RECEIVED/SEC::"
SENT = "OS:NETWORK INTERFACE::BYTES SENT/SEC::"
SECONDS_PER_SAMPLE = 5


def mean_days() -> float:
    """Days per device that give the SPEC's rows per device (about two rows a day)."""
    return world.VOLUMES[TABLE].rows_per_device / (1 + world.SENT_ROW_PRESENT)


@lru_cache(maxsize=1)
def nrs_weighting_factor() -> float:
    """E[N^2]/E[N] of a device's total sample count N under this model (Monte Carlo, fixed seed).

    The Xeon query weights each device's total bytes (about rate * 5 * N) by N, so
    its expected answer is 5 * E[rate] * E[N^2]/E[N].
    """
    rng = np.random.default_rng(12345)
    counts = draw_day_counts(rng, mean_days(), 100_000)
    rows = expand_days(rng, counts)
    nrs = draw_sample_counts(rng, draw_active_fraction(rng, len(counts)), rows)
    totals = np.bincount(rows.device, weights=nrs)
    return float((totals**2).mean() / totals.mean())


def _stratum_targets(column: str) -> np.ndarray:
    """Published mean bytes per (class, OS) stratum, indexed class * n_os + os (NaN if unpublished)."""
    n_os = len(OPERATING_SYSTEMS.values)
    out = np.full(len(PROCESSOR_CLASSES.values) * n_os, np.nan)
    for key, row in world.TARGETS["network_by_class_os"].items():
        cls, os_name = key.split("|")
        out[PROCESSOR_CLASSES.index(cls) * n_os + OPERATING_SYSTEMS.index(os_name)] = row[column]
    return out


def network_rows(rng: np.random.Generator, pop: Population, devices: np.ndarray) -> pa.Table:
    """Rows for the given devices (indices into the population)."""
    n = len(devices)
    stratum = pop.processor_class[devices] * len(OPERATING_SYSTEMS.values) + pop.os[devices]
    scale = SECONDS_PER_SAMPLE * nrs_weighting_factor()
    fallback = np.nanmedian(_stratum_targets("avg_bytes_received"))
    received_mean = np.nan_to_num(_stratum_targets("avg_bytes_received"), nan=fallback)[stratum] / scale
    sent_mean = np.nan_to_num(_stratum_targets("avg_bytes_sent"), nan=fallback)[stratum] / scale
    sigma, rho = world.DEVICE_RATE_SIGMA, world.SENT_RECEIVED_CORRELATION
    z_received = rng.standard_normal(n)
    z_sent = rho * z_received + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    received_rate = received_mean * np.exp(sigma * z_received - sigma**2 / 2)
    sent_rate = sent_mean * np.exp(sigma * z_sent - sigma**2 / 2)

    days = expand_days(rng, draw_day_counts(rng, mean_days(), n))
    nrs = draw_sample_counts(rng, draw_active_fraction(rng, n), days)
    has_sent = rng.random(len(days)) < world.SENT_ROW_PRESENT
    device = np.concatenate([days.device, days.device[has_sent]])
    rate = np.concatenate([received_rate[days.device], sent_rate[days.device[has_sent]]])
    avg = rate * mean_one_lognormal(rng, world.ROW_RATE_SIGMA, len(device))
    desc = np.concatenate([np.zeros(len(days), np.int32), np.ones(int(has_sent.sum()), np.int32)])
    order = np.lexsort((desc, np.concatenate([days.dt, days.dt[has_sent]]), device))
    columns = {
        "guid": pop.guid.take(pa.array(devices[device[order]])),
        "dt": pa.array(np.concatenate([days.dt, days.dt[has_sent]])[order]),
        "input_desc": pa.DictionaryArray.from_arrays(desc[order], [RECEIVED, SENT]).cast(pa.string()),
        "nrs": pa.array(np.concatenate([nrs, nrs[has_sent]])[order]),
        "min_bytes_sec": pa.array((avg * rng.uniform(0.0, 0.3, len(avg)))[order]),
        "avg_bytes_sec": pa.array(avg[order]),
        "max_bytes_sec": pa.array((avg * (1 + rng.lognormal(1.0, 0.8, len(avg))))[order]),
    }
    return pa.table(columns, schema=TABLES[TABLE].arrow_schema())
