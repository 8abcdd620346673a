"""Which devices report to which table: per-table coverage and overlaps.

Each table covers a subset of the population. Coverage is drawn by stratified
sampling without replacement: a stratum attribute (e.g. country) gets a quota
of devices per value, scaled from the published counts of the 1M-device sample
to the simulated population; within a stratum, devices can be weighted by a
second attribute (e.g. CPU generation) so that the table's mix of that
attribute matches a second published marginal.

Quotas at the reference size reproduce published coverage counts (devices per
country in the battery table, per RAM size in the memory table, ...). They are
calibration, not measurement: see :mod:`dpbench.telemetry.world`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpbench.telemetry import world
from dpbench.telemetry.population import (
    CHASSIS,
    COUNTRIES,
    CPU_GROUPS,
    OPERATING_SYSTEMS,
    PERSONAS,
    PROCESSOR_CLASSES,
    RAM_SIZES_GB,
    Population,
)


def scale_counts(rng: np.random.Generator, counts: np.ndarray, n_devices: int) -> np.ndarray:
    """Scale reference-population counts to n_devices with unbiased stochastic rounding."""
    scaled = np.asarray(counts, dtype=float) * n_devices / world.REFERENCE_DEVICES
    floor = np.floor(scaled)
    return (floor + (rng.random(len(scaled)) < scaled - floor)).astype(np.int64)


def stratified_sample(rng: np.random.Generator, strata: np.ndarray, quotas: np.ndarray,
                      weights: np.ndarray | None = None, eligible: np.ndarray | None = None) -> np.ndarray:
    """Sorted device indices: quotas[s] devices from each stratum s, without replacement.

    Within a stratum, devices are drawn with probability proportional to ``weights``
    (Efraimidis-Spirakis exponential keys); ``eligible`` masks devices out entirely.
    A stratum with fewer eligible devices than its quota gives all it has.
    """
    keys = rng.exponential(size=len(strata))
    if weights is not None:
        with np.errstate(divide="ignore"):
            keys = keys / weights
    if eligible is not None:
        keys = np.where(eligible, keys, np.inf)
    order = np.lexsort((keys, strata))
    sorted_strata = strata[order]
    starts = np.searchsorted(sorted_strata, np.arange(len(quotas)))
    rank = np.arange(len(order)) - starts[sorted_strata]
    chosen = order[(rank < quotas[sorted_strata]) & np.isfinite(keys[order])]
    return np.sort(chosen)


def quotas_with_remainder(listed: dict[int, float], n_strata: int, total: float, shares: np.ndarray,
                          cap: float) -> np.ndarray:
    """Reference-size quotas: published counts for listed strata; the rest of ``total`` spread over
    unlisted strata in proportion to their population ``shares``, each capped at ``cap``."""
    quotas = np.zeros(n_strata)
    for stratum, count in listed.items():
        quotas[stratum] = count
    unlisted = np.array([s not in listed for s in range(n_strata)])
    remainder = max(total - quotas.sum(), 0.0)
    if unlisted.any() and shares[unlisted].sum() > 0:
        quotas[unlisted] = np.minimum(remainder * shares[unlisted] / shares[unlisted].sum(), cap)
    return quotas


@dataclass
class Coverage:
    """Device indices (sorted) of each table's devices."""

    members: dict[str, np.ndarray]


def _group_shares(pop: Population, codes: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(codes, minlength=n) / pop.size


def draw_coverage(rng: np.random.Generator, pop: Population) -> Coverage:
    """Choose the devices of every per-day table."""
    n = pop.size
    t = world.TARGETS
    members: dict[str, np.ndarray] = {}

    # Network: quotas per (processor class, OS) as published by the Xeon query; other pairs absent.
    class_os = pop.processor_class * len(OPERATING_SYSTEMS.values) + pop.os
    quotas = np.zeros(len(PROCESSOR_CLASSES.values) * len(OPERATING_SYSTEMS.values))
    for key, row in t["network_by_class_os"].items():
        cls, os_name = key.split("|")
        quotas[PROCESSOR_CLASSES.index(cls) * len(OPERATING_SYSTEMS.values) + OPERATING_SYSTEMS.index(os_name)] = (
            row["number_of_systems"])
    members["system_network_consumption"] = stratified_sample(rng, class_os, scale_counts(rng, quotas, n))

    # Memory: quotas per RAM size (published histogram).
    ram_code = np.searchsorted(RAM_SIZES_GB, pop.ram_gb)
    quotas = np.array([t["ram_histogram"][f"{g:g}"]["devices"] for g in RAM_SIZES_GB], dtype=float)
    members["system_memory_utilization"] = stratified_sample(rng, ram_code, scale_counts(rng, quotas, n))

    # Package power: quotas per country (published); countries without a row are absent.
    quotas = np.array([t["pkg_power_by_country"].get(c, {}).get("number_of_systems", 0) for c in COUNTRIES.values],
                      dtype=float)
    members["system_hw_pkg_power"] = stratified_sample(rng, pop.country, scale_counts(rng, quotas, n))

    members.update(_battery_coverage(rng, pop))
    members.update(_hardware_coverage(rng, pop))

    # On/off/sleep: quotas per CPU group (published), unpublished groups below the HAVING threshold.
    groups = pop.cpu_group
    listed = {CPU_GROUPS.index(k): v["number_of_systems"] for k, v in t["sleep_by_cpugen"].items()}
    quotas = quotas_with_remainder(listed, len(CPU_GROUPS.values),
                                   world.VOLUMES["system_on_off_suspend_time_day"].devices,
                                   _group_shares(pop, groups, len(CPU_GROUPS.values)), world.UNPUBLISHED_STRATUM_CAP)
    members["system_on_off_suspend_time_day"] = stratified_sample(rng, groups, scale_counts(rng, quotas, n))

    # Browsing: quotas per persona (published); usage and pivot cover the same devices.
    quotas = np.array([t["persona_browsing"][p]["number_of_systems"] for p in PERSONAS.values], dtype=float)
    web = stratified_sample(rng, pop.persona, scale_counts(rng, quotas, n))
    members["system_web_cat_usage"] = web
    members["system_web_cat_pivot_duration"] = web
    return Coverage(members)


def _battery_coverage(rng: np.random.Generator, pop: Population) -> dict[str, np.ndarray]:
    """Battery devices: quotas per country, weighted by CPU group towards the published group mix."""
    t = world.TARGETS
    total = world.VOLUMES["system_batt_dc_events"].devices
    listed = {COUNTRIES.index(c): v["number_of_systems"] for c, v in t["battery_by_country"].items()}
    quotas = quotas_with_remainder(listed, len(COUNTRIES.values), total,
                                   _group_shares(pop, pop.country, len(COUNTRIES.values)), world.UNPUBLISHED_STRATUM_CAP)
    return {"system_batt_dc_events": stratified_sample(
        rng, pop.country, scale_counts(rng, quotas, pop.size), weights=battery_group_weights(pop)[pop.cpu_group])}


def battery_group_targets() -> np.ndarray:
    """Battery devices per CPU group at reference size: published groups, a small prior count for the
    other named groups, and the remainder for 'Unknown|Unknown' (which the battery query excludes)."""
    targets = np.full(len(CPU_GROUPS.values), float(world.UNPUBLISHED_BATTERY_DEVICES))
    for key, row in world.TARGETS["battery_by_cpugen"].items():
        targets[CPU_GROUPS.index(key)] = row["number_of_systems"]
    unknown = CPU_GROUPS.index("Unknown|Unknown")
    targets[unknown] = 0.0
    targets[unknown] = max(world.VOLUMES["system_batt_dc_events"].devices - targets.sum(), 1.0)
    return targets


def battery_group_weights(pop: Population) -> np.ndarray:
    """Sampling weight of each CPU group: its target share of battery devices over its population share."""
    target_share = battery_group_targets() / battery_group_targets().sum()
    pop_share = _group_shares(pop, pop.cpu_group, len(CPU_GROUPS.values))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pop_share > 0, target_share / pop_share, 0.0)


def _hardware_coverage(rng: np.random.Generator, pop: Population) -> dict[str, np.ndarray]:
    """The four hardware tables: a core in all four (quotas per chassis, published), a shared
    core of the three small tables, and each table's own devices (sizes from the SPEC)."""
    n = pop.size
    quotas = np.array([world.TARGETS["hardware_by_chassis"].get(c, {}).get("number_of_systems", 0)
                       for c in CHASSIS.values], dtype=float)
    core = stratified_sample(rng, pop.chassis, scale_counts(rng, quotas, n))
    taken = np.zeros(n, dtype=bool)
    taken[core] = True

    def draw_extra(count: float) -> np.ndarray:
        k = scale_counts(rng, np.array([count]), n)
        chosen = stratified_sample(rng, np.zeros(n, dtype=np.int64), k, eligible=~taken)
        taken[chosen] = True
        return chosen

    all_four = world.HARDWARE_ALL_FOUR
    triple = draw_extra(world.HARDWARE_TRIPLE_SHARED)
    shared = np.concatenate([core, triple])
    tables = {}
    for name in ("system_psys_rap_watts", "system_pkg_avg_freq_mhz", "system_pkg_temp_centigrade"):
        own = draw_extra(world.VOLUMES[name].devices - all_four - world.HARDWARE_TRIPLE_SHARED)
        tables[name] = np.sort(np.concatenate([shared, own]))
    tables["system_pkg_C0"] = np.sort(np.concatenate([core, draw_extra(world.VOLUMES["system_pkg_C0"].devices - all_four)]))
    return tables
