"""A family of worlds: the simulator's own parameters drawn around the calibrated world.

The calibrated world (:mod:`dpbench.telemetry.world`) is one world, fitted to the same published
answers that the scores are read against, so a synthesis tuned on it risks fitting that world. World
``K`` (an int) redraws every parameter of the simulator from a wide, plausible range around its
calibrated value, deterministically from ``K``:

* **mixes** -- countries (through each country's battery devices, which weigh the population), personas,
  RAM sizes, CPU groups (their weights), vendors (the Zipf exponent), chassis given the CPU's segment, OS
  given the processor class, and the browser sets of browsing devices;
* **per-table coverage and overlaps** -- every table's devices per stratum (country, RAM size,
  (class, OS), chassis, CPU group, persona), each table's size, the hardware tables' shared core;
* **tail shapes** -- the log-scale spreads of byte rates, battery minutes, package power, days per device,
  browsing durations, the gamma shapes of daily battery minutes and of each device's category tilt;
* **correlations between attributes and tables** -- the per-stratum means that tie a table's values to
  the device's attributes (battery minutes and power-ons per country and per CPU group, bytes per (class,
  OS), RAM use per RAM size, watts per chassis and per country, power-state times per CPU group), the
  correlation of sent and received bytes, which countries' most common browser is edge;
* **browsing mixes per persona** -- each persona's category mix, tilted by a per-world spread, and its
  browsing days per device.

``rows_scale`` multiplies the (device, day) rows per device of every per-day table (the reporting window
and the day caps grow with it), for a heavier corpus with the same devices.

World ``None`` with ``rows_scale`` 1 is the calibrated world, untouched (the simulator does not enter
:func:`parameters_of` at all then, so its output is the same bit for bit).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from dpbench.telemetry import battery, network, world

WORLD_STREAM = 0x776F726C64
"""Tag of the random stream that draws world K's parameters (distinct from the simulation's seeds)."""


def _jitter(rng: np.random.Generator, value: float, sigma: float) -> float:
    """``value`` times a log-normal factor of log-scale spread ``sigma`` (median one)."""
    return float(value * math.exp(sigma * rng.standard_normal()))


def _mix(rng: np.random.Generator, shares: dict[str, float], sigma: float) -> dict[str, float]:
    """A mix drawn around ``shares``: each share times a log-normal factor, renormalised."""
    drawn = {key: _jitter(rng, share, sigma) for key, share in shares.items()}
    total = sum(drawn.values())
    return {key: share / total for key, share in drawn.items()}


def _draw_targets(rng: np.random.Generator) -> dict[str, dict]:
    """The per-stratum coverage counts and means that the simulator is calibrated to, redrawn."""
    t = copy.deepcopy(world.TARGETS)
    count_sigma, mean_sigma = rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.4)
    for row in t["battery_by_country"].values():
        row["number_of_systems"] = max(1.0, _jitter(rng, row["number_of_systems"], count_sigma))
        row["avg_duration"] = _jitter(rng, row["avg_duration"], mean_sigma)
        row["avg_number_of_dc_powerons"] = max(1.0, _jitter(rng, row["avg_number_of_dc_powerons"], mean_sigma))
    for row in t["battery_by_cpugen"].values():
        row["number_of_systems"] = max(1.0, _jitter(rng, row["number_of_systems"], count_sigma))
        row["avg_duration_mins_on_battery"] = _jitter(rng, row["avg_duration_mins_on_battery"], mean_sigma)
    byte_sigma = rng.uniform(0.5, 1.5)
    for row in t["network_by_class_os"].values():
        row["number_of_systems"] = max(1.0, _jitter(rng, row["number_of_systems"], count_sigma))
        row["avg_bytes_received"] = _jitter(rng, row["avg_bytes_received"], byte_sigma)
        row["avg_bytes_sent"] = _jitter(rng, row["avg_bytes_sent"], byte_sigma)
    for row in t["pkg_power_by_country"].values():
        row["number_of_systems"] = max(1.0, _jitter(rng, row["number_of_systems"], count_sigma))
        row["avg_pkg_power_consumed"] = _jitter(rng, row["avg_pkg_power_consumed"], mean_sigma)
    for row in t["hardware_by_chassis"].values():
        row["number_of_systems"] = max(1.0, _jitter(rng, row["number_of_systems"], count_sigma))
        for column in ("avg_psys_rap_watts", "avg_freq_mhz", "avg_temp_centigrade"):
            row[column] = _jitter(rng, row[column], mean_sigma / 2)
        row["avg_pkg_c0"] = min(95.0, _jitter(rng, row["avg_pkg_c0"], mean_sigma))
    ram_shift = rng.uniform(3.0, 10.0)
    for row in t["ram_histogram"].values():
        row["devices"] = max(1.0, _jitter(rng, row["devices"], count_sigma))
        row["avg_percentage_used"] = float(np.clip(row["avg_percentage_used"] + ram_shift * rng.standard_normal(),
                                                   5.0, 95.0))
    for row in t["sleep_by_cpugen"].values():
        row["number_of_systems"] = max(1.0, _jitter(rng, row["number_of_systems"], count_sigma))
        for column in ("avg_on_time", "avg_off_time", "avg_modern_sleep_time", "avg_sleep_time"):
            row[column] = _jitter(rng, row[column], mean_sigma)
    category_sigma = rng.uniform(0.3, 1.2)
    for row in t["persona_browsing"].values():
        devices = row["number_of_systems"]
        row["number_of_systems"] = max(1.0, _jitter(rng, devices, count_sigma))
        row["days"] = row["number_of_systems"] * _jitter(rng, row["days"] / devices, mean_sigma)
        for column, value in row.items():
            if column not in ("number_of_systems", "days") and value is not None:
                row[column] = _jitter(rng, value, category_sigma)
    edge_share = rng.uniform(0.0, 0.3)
    for country, top in t["top_browser_by_country"].items():
        if rng.random() < edge_share:
            t["top_browser_by_country"][country] = "edge" if top == "chrome" else "chrome"
    return t


def draw_parameters(k: int) -> dict[str, object]:
    """World ``k``'s values of the calibrated world's module attributes that it redraws."""
    rng = np.random.default_rng([WORLD_STREAM, k])
    targets = _draw_targets(rng)
    group_factor = {key: row["number_of_systems"] / world.TARGETS["sleep_by_cpugen"][key]["number_of_systems"]
                    for key, row in targets["sleep_by_cpugen"].items()}
    minor_factor = rng.lognormal(0.0, 0.5)
    variants = tuple(replace(v, weight=v.weight * group_factor.get(f"{v.marketcodename}|{v.cpugen}", minor_factor))
                     for v in world.CPU_VARIANTS)
    volumes = {}
    for table, v in world.VOLUMES.items():
        devices = max(20, round(_jitter(rng, v.devices, 0.25)))
        volumes[table] = world.Volume(devices, max(devices, round(devices * _jitter(rng, v.rows_per_device, 0.3))))
    volumes["system_web_cat_pivot_duration"] = replace(volumes["system_web_cat_pivot_duration"],
                                                       devices=volumes["system_web_cat_usage"].devices)
    smallest = min(volumes[t].devices for t in ("system_psys_rap_watts", "system_pkg_avg_freq_mhz",
                                                "system_pkg_temp_centigrade"))
    core = sum(row["number_of_systems"] for row in targets["hardware_by_chassis"].values())
    return {
        "TARGETS": targets,
        "CPU_VARIANTS": variants,
        "VOLUMES": volumes,
        "HARDWARE_ALL_FOUR": round(core),
        "HARDWARE_TRIPLE_SHARED": int(max(0.0, (smallest - core) * rng.uniform(0.3, 0.95))),
        "DAYS_SIGMA": rng.uniform(0.6, 1.4),
        "COUNTRY_WEIGHT_UNLISTED": _jitter(rng, world.COUNTRY_WEIGHT_UNLISTED, 0.5),
        "CHASSIS_BY_SEGMENT": {s: _mix(rng, m, 0.6) for s, m in world.CHASSIS_BY_SEGMENT.items()},
        "OS_MIX": {c: _mix(rng, m, 0.6) for c, m in world.OS_MIX.items()},
        "VENDOR_ZIPF": rng.uniform(0.9, 1.8),
        "DEVICE_RATE_SIGMA": rng.uniform(0.8, 1.8),
        "ROW_RATE_SIGMA": rng.uniform(0.3, 0.9),
        "SENT_RECEIVED_CORRELATION": rng.uniform(0.3, 0.95),
        "SENT_ROW_PRESENT": rng.uniform(0.85, 1.0),
        "RAM_DEVICE_SD": rng.uniform(4.0, 14.0),
        "RAM_DAY_SD": rng.uniform(3.0, 11.0),
        "HARDWARE_DEVICE_SIGMA": {key: _jitter(rng, s, 0.4) for key, s in world.HARDWARE_DEVICE_SIGMA.items()},
        "PKG_POWER_DEVICE_SIGMA": rng.uniform(0.15, 0.6),
        "BATTERY_DEVICE_SIGMA": rng.uniform(0.3, 0.9),
        "BATTERY_DAY_SHAPE": rng.uniform(0.7, 3.0),
        "POWER_ONS_DEVICE_SIGMA": rng.uniform(0.1, 0.5),
        "SLEEP_DEVICE_CONCENTRATION": rng.uniform(3.0, 15.0),
        "BROWSER_SETS": _mix(rng, world.BROWSER_SETS, 0.5),
        "SECONDARY_BROWSER_WEIGHT": rng.uniform(0.05, 0.3),
        "CATEGORY_DEVICE_SHAPE": rng.uniform(1.5, 8.0),
        "USAGE_DURATION_SIGMA": rng.uniform(1.0, 1.8),
    }


def heavier_rows(parameters: dict[str, object], rows_scale: float) -> dict[str, object]:
    """``parameters`` with ``rows_scale`` times the rows per device of every per-day table."""
    volumes = parameters.get("VOLUMES", world.VOLUMES)
    targets = copy.deepcopy(parameters.get("TARGETS", world.TARGETS))
    for row in targets["persona_browsing"].values():
        row["days"] *= rows_scale
    span = math.ceil(rows_scale)
    return parameters | {
        "TARGETS": targets,
        "VOLUMES": {t: world.Volume(v.devices, round(v.rows * rows_scale)) for t, v in volumes.items()},
        "WINDOW_DAYS": world.WINDOW_DAYS * span,
        "SHORT_TABLE_DAYS_CAP": world.SHORT_TABLE_DAYS_CAP * span,
        "LONG_TABLE_DAYS_CAP": world.LONG_TABLE_DAYS_CAP * span,
    }


def parameters_of(world_index: int | None, rows_scale: float = 1.0) -> dict[str, object]:
    """The attributes of :mod:`.world` that world ``world_index`` (None: calibrated) with ``rows_scale``
    changes; empty for the calibrated world at its own rows."""
    if rows_scale <= 0:
        raise ValueError(f"rows_scale must be positive, got {rows_scale}")
    parameters = {} if world_index is None else draw_parameters(world_index)
    return parameters if rows_scale == 1 else heavier_rows(parameters, rows_scale)


@contextmanager
def in_world(world_index: int | None, rows_scale: float = 1.0) -> Iterator[None]:
    """Within the block the simulator draws from world ``world_index`` with ``rows_scale``; the calibrated
    values are restored on exit (and the caches derived from them emptied both ways)."""
    parameters = parameters_of(world_index, rows_scale)
    saved = {name: getattr(world, name) for name in parameters}
    _set(parameters)
    try:
        yield
    finally:
        _set(saved)


def _set(parameters: dict[str, object]) -> None:
    for name, value in parameters.items():
        setattr(world, name, value)
    network.nrs_weighting_factor.cache_clear()
    battery.group_factors.cache_clear()
