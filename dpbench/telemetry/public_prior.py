"""Public facts of the real corpus that synthesis may use at no privacy cost: the SPEC's table sizes.

The SPEC publishes, for each reporting table, how many of the real sample's 1,000,000 devices report
to it and how many rows it has. A model trained with DP-SGD gets these badly wrong: the devices that
report to a table have more loss terms, hence larger gradients, so clipping gives them less weight
and the model samples too few of them (a tenth to a half of the real share, at 50k devices and
epsilon 4); and day counts, drawn from a log-normal, come out too many. Synthesis therefore takes two
numbers per table family from the SPEC, as a public prior, and leaves everything else to the model:

* the share of devices with the table: the hurdle VAE's presence bits get one logit shift each
  (:meth:`~dpbench.models.vae.HurdleVAE.match_bit_rates`), so which devices have a table, and how
  that depends on their attributes, stays as trained;
* the mean days per device with the table: decoded day counts are scaled by one factor per family,
  so their spread and their dependence on the device stay as trained.

The shares are of the real sample, so a corpus of any size (simulated, or a user's real tables) gets
the same ones.
"""

from __future__ import annotations

import numpy as np
import torch

from dpbench.telemetry.calibration import VOLUMES
from dpbench.telemetry.wide_table import FAMILIES, WIDE_LAYOUT, WINDOW_DAYS, DecodedDevices, WideLayout

SPEC_DEVICES = 1_000_000
"""Devices in the real sample that the SPEC's table sizes count."""
FAMILY_TABLES: dict[str, tuple[str, int]] = {
    "network": ("system_network_consumption", 2),  # a received and a sent row per day
    "memory": ("system_memory_utilization", 1),
    "psys": ("system_psys_rap_watts", 1),
    "c0": ("system_pkg_C0", 1),
    "freq": ("system_pkg_avg_freq_mhz", 1),
    "temp": ("system_pkg_temp_centigrade", 1),
    "pkg_power": ("system_hw_pkg_power", 1),
    "battery": ("system_batt_dc_events", 1),
    "power_states": ("system_on_off_suspend_time_day", 1),
    "browsing": ("system_web_cat_pivot_duration", 1),  # one pivot row per browsing day
}
"""Per family, the SPEC table that counts its devices and days, and its rows per device-day."""


def presence_share(family: str) -> float:
    """The share of the real sample's devices that report to ``family``'s table."""
    return VOLUMES[FAMILY_TABLES[family][0]].devices / SPEC_DEVICES


def mean_days(family: str) -> float:
    """The mean number of days a device that reports to ``family``'s table reports for."""
    table, rows_per_day = FAMILY_TABLES[family]
    return VOLUMES[table].rows_per_device / rows_per_day


def bit_targets(layout: WideLayout = WIDE_LAYOUT) -> torch.Tensor:
    """One target rate per bit of ``layout`` (in its order): each family's presence share, NaN elsewhere."""
    return torch.tensor([presence_share(name.removesuffix(".present")) if name.endswith(".present") else float("nan")
                         for name in layout.bits])


def match_day_counts(decoded: DecodedDevices) -> dict[str, float]:
    """Scale each family's day counts (of the devices that have it) to the public mean; returns the factors.

    Counts stay integers in [1, WINDOW_DAYS]; the factor is found by bisection on the rounded, clipped
    counts, so the mean is matched after rounding.
    """
    factors = {}
    for family in FAMILIES:
        present = decoded.present[family]
        if not present.any():
            continue
        days = decoded.days[family][present].astype(np.float64)

        def scaled(log_factor: float) -> np.ndarray:
            return np.clip(np.rint(days * np.exp(log_factor)), 1, WINDOW_DAYS)

        low, high = -10.0, 10.0
        for _ in range(50):
            middle = (low + high) / 2
            low, high = (middle, high) if scaled(middle).mean() < mean_days(family) else (low, middle)
        decoded.days[family][present] = scaled(high).astype(np.int64)
        factors[family] = float(np.exp(high))
    return factors
