"""Reporting days: how many days each device reports to a table, and which dates.

A device reports on a run of consecutive days inside the reporting window.
Run lengths are a discretised log-normal (heavy tailed) whose location is
solved so that the mean number of days per device equals a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import ndtri

from dpbench.telemetry import world

FIRST_DAY = np.datetime64(world.FIRST_DAY, "D")
_GRID = ndtri((np.arange(4000) + 0.5) / 4000)


@lru_cache(maxsize=256)
def _log_location(mean_days: float, sigma: float, cap: int) -> float:
    """Location mu with E[clip(round(exp(mu + sigma Z)), 1, cap)] = mean_days (bisection on a quantile grid)."""
    lo, hi = -10.0, np.log(cap) + 5 * sigma
    for _ in range(60):
        mid = (lo + hi) / 2
        m = np.clip(np.rint(np.exp(mid + sigma * _GRID)), 1, cap).mean()
        lo, hi = (mid, hi) if m < mean_days else (lo, mid)
    return (lo + hi) / 2


def draw_day_counts(rng: np.random.Generator, mean_days: np.ndarray | float, n: int,
                    sigma: float | None = None, cap: int | None = None) -> np.ndarray:
    """Days reported by each of n devices; ``mean_days`` is a scalar or one target per device; ``sigma`` and
    ``cap`` default to the world's ``DAYS_SIGMA`` and ``WINDOW_DAYS``."""
    sigma = world.DAYS_SIGMA if sigma is None else sigma
    cap = world.WINDOW_DAYS if cap is None else cap
    means = np.broadcast_to(np.asarray(mean_days, dtype=float), (n,))
    unique, inverse = np.unique(means, return_inverse=True)
    mu = np.array([_log_location(float(m), sigma, cap) for m in unique])[inverse]
    return np.clip(np.rint(np.exp(mu + sigma * rng.standard_normal(n))), 1, cap).astype(np.int64)


@dataclass(frozen=True)
class DayRows:
    """One row per (device, day): ``device`` indexes the chunk's devices, ``dt`` is the date."""

    device: np.ndarray
    dt: np.ndarray

    def __len__(self) -> int:
        return len(self.device)


def expand_days(rng: np.random.Generator, counts: np.ndarray) -> DayRows:
    """Rows for runs of ``counts[i]`` consecutive days starting at a random day of the window."""
    starts = (rng.random(len(counts)) * (world.WINDOW_DAYS - counts + 1)).astype(np.int64)
    device = np.repeat(np.arange(len(counts)), counts)
    first_row = np.concatenate([[0], np.cumsum(counts)[:-1]])
    offset = np.arange(len(device)) - first_row[device]
    return DayRows(device, FIRST_DAY + (starts[device] + offset).astype("timedelta64[D]"))


def draw_active_fraction(rng: np.random.Generator, n: int) -> np.ndarray:
    """Typical share of a day that each of n devices is on and sampled (Beta(2, 4), mean 1/3)."""
    return rng.beta(2.0, 4.0, size=n)


def draw_sample_counts(rng: np.random.Generator, active_fraction: np.ndarray, rows: DayRows) -> np.ndarray:
    """nrs of each row: samples taken that day (one per 5 s), around the device's active fraction."""
    day_factor = rng.lognormal(-0.08, 0.4, size=len(rows))
    return np.clip(np.rint(world.SAMPLES_PER_DAY * active_fraction[rows.device] * day_factor), 1,
                   world.SAMPLES_PER_DAY).astype(np.int64)


def mean_one_lognormal(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    """Log-normal multiplicative noise with mean exactly one."""
    return rng.lognormal(-sigma * sigma / 2, sigma, size=size)
