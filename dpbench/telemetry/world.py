"""The calibrated world: every number the simulator draws its corpus from, in one place.

Two sources, kept apart:

* ``TARGETS`` -- the published answers of the benchmark queries on the real
  1M-device sample, read from ``world_targets.json`` (written by
  ``scripts/telemetry_world_targets.py`` from the ground-truth CSVs). The simulator
  uses them as *parameters* of its generative model: per-stratum coverage of
  each table (e.g. battery devices per country), and per-stratum means of the
  row-level values (e.g. mean battery minutes per country and CPU generation).
  Because of this, scoring the simulator against the same answers is an
  in-sample consistency check of the generator, not independent evidence that
  the simulated tables are realistic beyond those aggregates.
* Hand-set priors below -- table sizes and rows per device from the SPEC, and
  plausible choices where no published number exists (OS mix, vendors, CPU
  catalogue details, noise levels, browser co-usage). Each is documented.

Counts are given for the reference population of 1,000,000 devices; the
simulator scales them to the requested size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

REFERENCE_DEVICES = 1_000_000
"""Population size of the real sample that all counts below refer to."""

TARGETS: dict[str, dict] = json.loads((Path(__file__).with_name("world_targets.json")).read_text())
"""Published answers keyed by section (see scripts/telemetry_world_targets.py); group keys 'a|b'."""


@dataclass(frozen=True)
class Volume:
    """A table's size in the real sample (SPEC): distinct devices and rows."""

    devices: int
    rows: int

    @property
    def rows_per_device(self) -> float:
        return self.rows / self.devices


VOLUMES: dict[str, Volume] = {
    "system_network_consumption": Volume(37_224, 5_721_356),
    "system_memory_utilization": Volume(69_514, 11_671_422),
    "system_psys_rap_watts": Volume(611, 2_609),
    "system_pkg_C0": Volume(8_943, 513_353),
    "system_pkg_avg_freq_mhz": Volume(613, 2_563),
    "system_pkg_temp_centigrade": Volume(622, 2_639),
    "system_hw_pkg_power": Volume(800, 45_133),
    "system_batt_dc_events": Volume(19_780, 372_673),
    "system_on_off_suspend_time_day": Volume(36_958, 1_582_017),
    "system_web_cat_usage": Volume(64_276, 21_354_922),
    "system_web_cat_pivot_duration": Volume(64_276, 4_537_100),
}
"""Table sizes from the SPEC."""

HARDWARE_ALL_FOUR = 104
"""Devices present in all of psys, C0, frequency and temperature (SPEC)."""
HARDWARE_TRIPLE_SHARED = 480
"""Prior: devices in psys, frequency and temperature but not C0 (the three small
tables come from one collector and overlap heavily; only their union with C0 is published)."""

# --- calendar and day counts -------------------------------------------------
FIRST_DAY = "2020-01-01"
WINDOW_DAYS = 1096
"""Reporting window (prior): three years starting on FIRST_DAY."""
DAYS_SIGMA = 1.0
"""Log-scale spread of days per device (prior): heavy-tailed, a few devices report for years."""
SHORT_TABLE_DAYS_CAP = 20
"""Cap on days per device in the three small hardware tables (keeps their guid-only join bounded)."""
LONG_TABLE_DAYS_CAP = 365
"""Cap on days per device in the C0 table."""
SAMPLES_PER_DAY = 17_280
"""One sample every 5 s (SPEC), so nrs <= 17,280 per day."""

# --- devices -----------------------------------------------------------------
COUNTRY_WEIGHT_UNLISTED = 60.0
"""Population weight (in battery-device units) of the 14 countries without a published battery row
(fewer than 100 battery devices); listed countries weigh their published battery device count."""

CHASSIS_BY_SEGMENT: dict[str, dict[str, float]] = {
    "MBL": {"Notebook": 0.80, "2 in 1": 0.14, "Tablet": 0.02, "Other": 0.04},
    "DT": {"Desktop": 0.86, "Intel NUC/STK": 0.06, "Other": 0.05, "Server/WS": 0.03},
    "SRV": {"Server/WS": 0.55, "Desktop": 0.40, "Other": 0.05},
    "Unknown": {"Notebook": 0.62, "Desktop": 0.30, "2 in 1": 0.04, "Intel NUC/STK": 0.01, "Other": 0.03},
}
"""Chassis mix given the CPU's market segment (prior)."""

OS_MIX: dict[str, dict[str, float]] = {
    "Non-Server Class": {"Win10": 0.745, "Win11": 0.23, "Win8.1": 0.006, "Win7": 0.012,
                         "Win Server": 0.002, "n/a": 0.003, "Win Vista": 0.002},
    "Server Class": {"Win10": 0.70, "Win Server": 0.15, "Win11": 0.12, "Win7": 0.03},
}
"""OS mix by processor class (prior; 7 OS values as in the SPEC)."""

VENDORS: tuple[str, ...] = (
    "HP", "Dell", "Lenovo", "Acer", "Asus", "MSI", "Microsoft", "Samsung", "Toshiba", "Fujitsu", "Gigabyte",
    "Intel", "LG", "Huawei", "Razer", "Medion", "Panasonic", "Sony", "Xiaomi", "VAIO", "Alienware", "Chuwi",
    "Dynabook", "Gateway", "Getac", "Google", "Hasee", "Honor", "Jumper", "Mechrevo", "Positivo", "Schenker",
    "Clevo", "Thomson", "Vizio", "Teclast", "Eurocom", "Multilaser", "Machenike", "Thunderobot", "Avita",
    "Walton", "Haier", "Onda", "Zotac", "Supermicro", "ASRock", "Other",
)
"""48 vendors, most common first (prior: Zipf shares, exponent VENDOR_ZIPF)."""
VENDOR_ZIPF = 1.3
MODELS_PER_VENDOR = 6



@dataclass(frozen=True)
class CpuVariant:
    """One CPU as sysinfo and cpu_metadata describe it, with its population weight.

    ``weight`` is in on/off-table device units: the published device count of its
    (marketcodename, cpugen) group in the sleep query, split among the group's
    variants, or a prior for groups too small to be published.
    """

    marketcodename: str
    cpugen: str
    cpuname: str
    cpu_family: str
    lithography: str
    cores: str
    segment: str
    codes: tuple[str, ...]
    weight: float


def _sleep_count(group: str) -> float:
    return float(TARGETS["sleep_by_cpugen"][group]["number_of_systems"])


MINOR_GROUP_WEIGHT = 78.0
"""Prior: on/off-table devices of each CPU group too small to be published (< 100)."""

CPU_VARIANTS: tuple[CpuVariant, ...] = (
    CpuVariant("Coffee Lake", "9th Gen i3", "9th Gen i3", "Core i3", "14 nm", "4", "DT", ("i3-9100", "i3-9100F"), _sleep_count("Coffee Lake|9th Gen i3")),
    CpuVariant("Coffee Lake", "9th Gen i5", "9th Gen i5", "Core i5", "14 nm", "6", "DT", ("i5-9400", "i5-9400F", "i5-9300H"), _sleep_count("Coffee Lake|9th Gen i5")),
    CpuVariant("Coffee Lake", "9th Gen i7", "9th Gen i7", "Core i7", "14 nm", "8", "DT", ("i7-9700", "i7-9750H", "i7-9700K"), _sleep_count("Coffee Lake|9th Gen i7")),
    CpuVariant("Coffee Lake", "9th Gen i9", "9th Gen i9", "Core i9", "14 nm", "8", "DT", ("i9-9900K", "i9-9900"), _sleep_count("Coffee Lake|9th Gen i9")),
    CpuVariant("Coffee Lake", "Pentium/Celeron-Coffee Lake", "Pentium/Celeron", "Pentium", "14 nm", "2", "DT", ("G5400", "G4900"), _sleep_count("Coffee Lake|Pentium/Celeron-Coffee Lake")),
    CpuVariant("Coffee Lake", "Xeon", "Xeon", "Xeon", "14 nm", "6", "SRV", ("E-2176G", "E-2276M"), _sleep_count("Coffee Lake|Xeon")),
    CpuVariant("Comet Lake", "10th Gen i3", "10th Gen i3", "Core i3", "14 nm", "4", "MBL", ("i3-10110U", "i3-10100"), _sleep_count("Comet Lake|10th Gen i3")),
    CpuVariant("Comet Lake", "10th Gen i5", "10th Gen i5", "Core i5", "14 nm", "4", "MBL", ("i5-10210U", "i5-10400", "i5-10300H"), _sleep_count("Comet Lake|10th Gen i5")),
    CpuVariant("Comet Lake", "10th Gen i7", "10th Gen i7", "Core i7", "14 nm", "6", "MBL", ("i7-10510U", "i7-10750H", "i7-10700"), _sleep_count("Comet Lake|10th Gen i7")),
    CpuVariant("Comet Lake", "10th Gen i9", "10th Gen i9", "Core i9", "14 nm", "10", "DT", ("i9-10900K", "i9-10885H"), _sleep_count("Comet Lake|10th Gen i9")),
    CpuVariant("Comet Lake", "Pentium/Celeron-Comet Lake", "Pentium/Celeron", "Celeron", "14 nm", "2", "MBL", ("5205U", "G6400"), _sleep_count("Comet Lake|Pentium/Celeron-Comet Lake")),
    CpuVariant("Ice Lake", "10th Gen i3", "10th Gen i3", "Core i3", "10 nm", "2", "MBL", ("i3-1005G1",), _sleep_count("Ice Lake|10th Gen i3")),
    CpuVariant("Ice Lake", "10th Gen i5", "10th Gen i5", "Core i5", "10 nm", "4", "MBL", ("i5-1035G1", "i5-1035G4"), _sleep_count("Ice Lake|10th Gen i5")),
    CpuVariant("Ice Lake", "10th Gen i7", "10th Gen i7", "Core i7", "10 nm", "4", "MBL", ("i7-1065G7",), _sleep_count("Ice Lake|10th Gen i7")),
    CpuVariant("Tiger Lake", "11th Gen i3", "11th Gen i3", "Core i3", "10 nm", "2", "MBL", ("i3-1115G4",), _sleep_count("Tiger Lake|11th Gen i3")),
    CpuVariant("Tiger Lake", "11th Gen i5", "11th Gen i5", "Core i5", "10 nm", "4", "MBL", ("i5-1135G7", "i5-11400H"), _sleep_count("Tiger Lake|11th Gen i5")),
    CpuVariant("Tiger Lake", "11th Gen i7", "11th Gen i7", "Core i7", "10 nm", "4", "MBL", ("i7-1165G7", "i7-11800H"), _sleep_count("Tiger Lake|11th Gen i7")),
    CpuVariant("Rocket Lake", "11th Gen i5", "11th Gen i5", "Core i5", "14 nm", "6", "DT", ("i5-11400", "i5-11400F"), _sleep_count("Rocket Lake|11th Gen i5")),
    CpuVariant("Rocket Lake", "11th Gen i7", "11th Gen i7", "Core i7", "14 nm", "8", "DT", ("i7-11700", "i7-11700K"), _sleep_count("Rocket Lake|11th Gen i7")),
    CpuVariant("Rocket Lake", "11th Gen i9", "11th Gen i9", "Core i9", "14 nm", "8", "DT", ("i9-11900K",), _sleep_count("Rocket Lake|11th Gen i9")),
    CpuVariant("Alder Lake", "12th Gen i5", "12th Gen i5", "Core i5", "Intel 7", "10", "DT", ("i5-12400", "i5-1235U"), _sleep_count("Alder Lake|12th Gen i5")),
    CpuVariant("Alder Lake", "12th Gen i7", "12th Gen i7", "Core i7", "Intel 7", "12", "DT", ("i7-12700", "i7-1255U", "i7-12700H"), _sleep_count("Alder Lake|12th Gen i7")),
    CpuVariant("Alder Lake", "12th Gen i9", "12th Gen i9", "Core i9", "Intel 7", "16", "DT", ("i9-12900K",), _sleep_count("Alder Lake|12th Gen i9")),
    CpuVariant("Gemini Lake Refresh", "Pentium/Celeron-Gemini Lake Refresh", "Pentium/Celeron", "Celeron", "14 nm", "2", "MBL", ("N4020", "N4120", "N5030"), _sleep_count("Gemini Lake Refresh|Pentium/Celeron-Gemini Lake Refresh")),
    CpuVariant("Jasper Lake", "Pentium/Celeron-Jasper Lake", "Pentium/Celeron", "Celeron", "10 nm", "2", "MBL", ("N4500", "N5100"), _sleep_count("Jasper Lake|Pentium/Celeron-Jasper Lake")),
    CpuVariant("Whiskey Lake", "Pentium/Celeron-Whiskey Lake", "Pentium/Celeron", "Pentium", "14 nm", "2", "MBL", ("4205U", "5405U"), _sleep_count("Whiskey Lake|Pentium/Celeron-Whiskey Lake")),
    # Groups too small to be published in the sleep answer (prior weights).
    CpuVariant("Alder Lake", "12th Gen i3", "12th Gen i3", "Core i3", "Intel 7", "4", "DT", ("i3-12100",), MINOR_GROUP_WEIGHT),
    CpuVariant("Alder Lake", "Pentium/Celeron-Alder Lake", "Pentium/Celeron", "Pentium", "Intel 7", "2", "DT", ("G7400",), MINOR_GROUP_WEIGHT),
    CpuVariant("Tiger Lake", "11th Gen i9", "11th Gen i9", "Core i9", "10 nm", "8", "MBL", ("i9-11980HK",), MINOR_GROUP_WEIGHT),
    CpuVariant("Tiger Lake", "Pentium/Celeron-Tiger Lake", "Pentium/Celeron", "Pentium", "10 nm", "2", "MBL", ("7505",), MINOR_GROUP_WEIGHT),
    CpuVariant("Comet Lake", "Xeon", "Xeon", "Xeon", "14 nm", "10", "SRV", ("W-1290P", "W-10885M"), MINOR_GROUP_WEIGHT),
    CpuVariant("Cascade Lake", "Xeon", "Xeon", "Xeon", "14 nm", "16", "SRV", ("Gold 6226R", "Silver 4210R"), MINOR_GROUP_WEIGHT),
    CpuVariant("Skylake", "Xeon", "Xeon", "Xeon", "14 nm", "8", "SRV", ("W-2123", "Silver 4114"), MINOR_GROUP_WEIGHT),
    CpuVariant("Ice Lake", "Xeon", "Xeon", "Xeon", "10 nm", "16", "SRV", ("W-3323", "Silver 4314"), MINOR_GROUP_WEIGHT),
    CpuVariant("Rocket Lake", "Xeon", "Xeon", "Xeon", "14 nm", "8", "SRV", ("E-2336",), MINOR_GROUP_WEIGHT),
    CpuVariant("Lakefield", "Lakefield i5", "Lakefield i5", "Core i5", "10 nm", "5", "MBL", ("i5-L16G7",), MINOR_GROUP_WEIGHT),
    CpuVariant("Elkhart Lake", "Pentium/Celeron-Elkhart Lake", "Pentium/Celeron", "Celeron", "10 nm", "2", "MBL", ("J6412",), MINOR_GROUP_WEIGHT),
    CpuVariant("Gemini Lake", "Pentium/Celeron-Gemini Lake", "Pentium/Celeron", "Celeron", "14 nm", "2", "MBL", ("N4000", "J4105"), MINOR_GROUP_WEIGHT),
    # Processors older than 9th Gen carry no generation in cpu_metadata ("Unknown|Unknown" in the
    # sleep answer); their published device count is split among these sysinfo names (prior shares).
    *(
        CpuVariant("Unknown", "Unknown", name, family, litho, cores, "Unknown", codes,
                   _sleep_count("Unknown|Unknown") * share)
        for name, family, litho, cores, codes, share in (
            ("8th Gen i5", "Core i5", "14 nm", "4", ("i5-8250U", "i5-8265U", "i5-8400"), 0.33),
            ("8th Gen i7", "Core i7", "14 nm", "4", ("i7-8550U", "i7-8750H", "i7-8700"), 0.20),
            ("8th Gen i3", "Core i3", "14 nm", "2", ("i3-8130U", "i3-8100"), 0.07),
            ("7th Gen i5", "Core i5", "14 nm", "2", ("i5-7200U", "i5-7500"), 0.10),
            ("7th Gen i7", "Core i7", "14 nm", "4", ("i7-7500U", "i7-7700HQ"), 0.06),
            ("6th Gen i5", "Core i5", "14 nm", "2", ("i5-6200U", "i5-6500"), 0.06),
            ("4th Gen i5", "Core i5", "22 nm", "2", ("i5-4200U", "i5-4590"), 0.04),
            ("Pentium/Celeron", "Celeron", "14 nm", "2", ("N3060", "N4000"), 0.08),
            ("Xeon", "Xeon", "14 nm", "4", ("E3-1505M v5", "E5-2680 v4"), 0.03),
            ("Core 2", "Core 2", "45 nm", "2", ("T6600",), 0.015),
            ("Atom", "Atom", "14 nm", "4", ("x5-Z8350",), 0.015),
        )
    ),
)
"""The CPU catalogue: one entry per (cpu_metadata group, sysinfo name)."""

UNPUBLISHED_STRATUM_CAP = 90
"""Prior: devices given to a stratum that is absent from a published answer with a HAVING > 100
clause (e.g. a country without a battery row), so that it stays below the threshold."""

# --- per-table value models (priors) -----------------------------------------
DEVICE_RATE_SIGMA = 1.2
"""Log-scale spread of a device's network byte rate (heavy tails)."""
ROW_RATE_SIGMA = 0.6
"""Log-scale day-to-day spread of a device's network byte rate."""
SENT_RECEIVED_CORRELATION = 0.8
"""Correlation of a device's log sent and log received rates."""
SENT_ROW_PRESENT = 0.98
"""Probability that a network day has a 'sent' row beside its 'received' row ("usually two rows")."""

RAM_DEVICE_SD = 8.0
"""Spread (percentage points) of devices' mean RAM utilisation around their RAM size's mean."""
RAM_DAY_SD = 7.0
"""Day-to-day spread (percentage points) of a device's RAM utilisation."""

HARDWARE_DEVICE_SIGMA = {"psys": 0.15, "c0": 0.12, "freq": 0.10, "temp": 0.06}
"""Log-scale device spread of the four hardware metrics around their chassis mean."""
HARDWARE_DAY_SIGMA = 0.08
HARDWARE_CHASSIS_FALLBACK = {"Server/WS": "Desktop", "Tablet": "2 in 1", "Other": "Notebook"}
"""Chassis without a published hardware row borrow the means of a similar chassis."""

PKG_POWER_DEVICE_SIGMA = 0.3
PKG_POWER_DAY_SIGMA = 0.2
PKG_POWER_TWO_SOCKETS = 0.03
"""Share of package-power devices that report a second processor instance."""

BATTERY_DEVICE_SIGMA = 0.5
BATTERY_DAY_SHAPE = 1.5
"""Gamma shape of a device's daily battery minutes around its mean (smaller: heavier tail)."""
POWER_ONS_DEVICE_SIGMA = 0.25
UNPUBLISHED_BATTERY_DEVICES = 40
"""Prior: battery devices of each CPU group absent from the battery answer (below its threshold)."""

SLEEP_DEVICE_CONCENTRATION = 8.0
SLEEP_DAY_CONCENTRATION = 4.0
"""Gamma shapes of device- and day-level variation of the on/off/standby/sleep split."""
SLEEP_TOTAL_SD = 600.0
"""Day-to-day spread (s) of the accounted seconds per day around the group mean."""

BROWSER_SETS: dict[tuple[str, ...], float] = {
    ("chrome",): 0.3205,
    ("edge",): 0.1059,
    ("firefox",): 0.0579,
    ("chrome", "edge"): 0.39,
    ("chrome", "firefox"): 0.07,
    ("edge", "firefox"): 0.0157,
    ("chrome", "edge", "firefox"): 0.04,
}
"""Browsers a browsing device uses (prior), solved so that the marginals equal the published
82.05% chrome, 55.16% edge and 18.36% firefox. Countries whose published top browser is edge
swap the roles of chrome and edge."""
BROWSER_PREFERENCE = ("chrome", "firefox", "edge")
"""A device's primary browser is the first of its set in this order (edge first where edge leads)."""
SECONDARY_BROWSER_WEIGHT = 0.12
"""Row weight of a secondary browser relative to the primary one."""
USAGE_ROWS_PER_DAY_EXTRA = 7.3
"""Poisson mean of (category, browser) rows per browsing day beyond the first, before merging duplicates."""
CATEGORY_DEVICE_SHAPE = 4.0
"""Gamma shape of a device's tilt of its persona's category mix."""
USAGE_DURATION_MEDIAN_MS = 240_000.0
USAGE_DURATION_SIGMA = 1.4
