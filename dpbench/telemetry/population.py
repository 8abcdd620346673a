"""The simulated devices: one record per guid, the rows of sysinfo and cpu_metadata.

Attributes are drawn independently except where a dependency is documented:
chassis depends on the CPU's market segment, the OS on the processor class
(Xeon or not). Marginals come from :mod:`dpbench.telemetry.world`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpbench.telemetry import world
from dpbench.telemetry.schema import TABLES

SERVER_CLASS, NON_SERVER_CLASS = "Server Class", "Non-Server Class"


@dataclass(frozen=True)
class Vocabulary:
    """The values of one categorical attribute; devices hold integer codes into it."""

    values: tuple[str, ...]

    def index(self, value: str) -> int:
        return self.values.index(value)

    def arrow(self, codes: np.ndarray) -> pa.Array:
        """Decode integer codes to an Arrow string array."""
        return pc.take(pa.array(self.values, pa.string()), pa.array(codes, pa.int32()))


COUNTRIES = Vocabulary(tuple(sorted(world.TARGETS["top_browser_by_country"])))
PERSONAS = Vocabulary(tuple(sorted(world.TARGETS["persona_browsing"])))
CHASSIS = Vocabulary(("Notebook", "Desktop", "2 in 1", "Intel NUC/STK", "Server/WS", "Tablet", "Other"))
OPERATING_SYSTEMS = Vocabulary(("Win10", "Win11", "Win8.1", "Win7", "Win Server", "n/a", "Win Vista"))
VENDORS = Vocabulary(world.VENDORS)
CPU_GROUPS = Vocabulary(tuple(dict.fromkeys(f"{v.marketcodename}|{v.cpugen}" for v in world.CPU_VARIANTS)))
"""(marketcodename, cpugen) groups of cpu_metadata, as 'a|b' keys."""
RAM_SIZES_GB = np.array(sorted(float(k) for k in world.TARGETS["ram_histogram"]))
PROCESSOR_CLASSES = Vocabulary((NON_SERVER_CLASS, SERVER_CLASS))


@dataclass
class Population:
    """Device attributes as arrays indexed by device number (0..n-1)."""

    guid: pa.StringArray
    country: np.ndarray
    chassis: np.ndarray
    os: np.ndarray
    vendor: np.ndarray
    model: np.ndarray
    ram_gb: np.ndarray
    persona: np.ndarray
    cpu_variant: np.ndarray
    cpu_code: np.ndarray

    @property
    def size(self) -> int:
        return len(self.country)

    @property
    def cpu_group(self) -> np.ndarray:
        """Code into CPU_GROUPS of each device's (marketcodename, cpugen)."""
        return _VARIANT_GROUP[self.cpu_variant]

    @property
    def processor_class(self) -> np.ndarray:
        """Code into PROCESSOR_CLASSES: Server Class iff sysinfo cpuname is Xeon."""
        return _VARIANT_IS_XEON[self.cpu_variant].astype(np.int64)

    def sysinfo_table(self) -> pa.Table:
        """The system_sysinfo_unique_normalized rows."""
        variants = world.CPU_VARIANTS
        columns = {
            "guid": self.guid,
            "chassistype": CHASSIS.arrow(self.chassis),
            "countryname_normalized": COUNTRIES.arrow(self.country),
            "modelvendor_normalized": VENDORS.arrow(self.vendor),
            "model_normalized": _MODELS.arrow(self.vendor * world.MODELS_PER_VENDOR + self.model),
            "ram": pa.array(self.ram_gb, pa.float64()),
            "os": OPERATING_SYSTEMS.arrow(self.os),
            "#ofcores": _variant_attribute(self.cpu_variant, [v.cores for v in variants]),
            "cpuname": _variant_attribute(self.cpu_variant, [v.cpuname for v in variants]),
            "cpucode": _CPU_CODES.arrow(self.cpu_code),
            "cpu_family": _variant_attribute(self.cpu_variant, [v.cpu_family for v in variants]),
            "processornumber": _variant_attribute(self.cpu_variant, [v.lithography for v in variants]),
            "persona": PERSONAS.arrow(self.persona),
        }
        return pa.table(columns, schema=TABLES["system_sysinfo_unique_normalized"].arrow_schema())

    def cpu_metadata_table(self) -> pa.Table:
        """The system_cpu_metadata rows."""
        variants = world.CPU_VARIANTS
        columns = {
            "guid": self.guid,
            "cpucode": _CPU_CODES.arrow(self.cpu_code),
            "marketsegment": _variant_attribute(self.cpu_variant, [v.segment for v in variants]),
            "cpugen": _variant_attribute(self.cpu_variant, [v.cpugen for v in variants]),
            "marketcodename": _variant_attribute(self.cpu_variant, [v.marketcodename for v in variants]),
            "#ofcores": _variant_attribute(self.cpu_variant, [v.cores for v in variants]),
        }
        return pa.table(columns, schema=TABLES["system_cpu_metadata"].arrow_schema())


_VARIANT_GROUP = np.array([CPU_GROUPS.index(f"{v.marketcodename}|{v.cpugen}") for v in world.CPU_VARIANTS])
_VARIANT_IS_XEON = np.array([v.cpuname == "Xeon" for v in world.CPU_VARIANTS])
_CPU_CODES = Vocabulary(tuple(dict.fromkeys(code for v in world.CPU_VARIANTS for code in v.codes)))
_VARIANT_CODE_INDEX = [np.array([_CPU_CODES.index(c) for c in v.codes]) for v in world.CPU_VARIANTS]
_MODEL_SERIES = ("14", "15", "Pro", "Mini", "All-in-One", "Workstation")
_MODELS = Vocabulary(tuple(f"{vendor} {series}" for vendor in world.VENDORS for series in _MODEL_SERIES))


def _variant_attribute(variant: np.ndarray, values: list[str]) -> pa.Array:
    return Vocabulary(tuple(values)).arrow(variant)


def _shares(weights: dict[str, float], vocabulary: Vocabulary) -> np.ndarray:
    p = np.array([weights.get(v, 0.0) for v in vocabulary.values], dtype=float)
    return p / p.sum()


def country_shares() -> np.ndarray:
    """Population share of each country (battery device counts as weights; see calibration)."""
    battery = world.TARGETS["battery_by_country"]
    weights = {c: float(battery[c]["number_of_systems"]) if c in battery else world.COUNTRY_WEIGHT_UNLISTED
               for c in COUNTRIES.values}
    return _shares(weights, COUNTRIES)


def persona_shares() -> np.ndarray:
    """Population share of each persona (its published browsing device count as weight)."""
    return _shares({p: float(v["number_of_systems"]) for p, v in world.TARGETS["persona_browsing"].items()}, PERSONAS)


def cpu_variant_shares() -> np.ndarray:
    """Population share of each CPU catalogue entry."""
    w = np.array([v.weight for v in world.CPU_VARIANTS])
    return w / w.sum()


def ram_shares() -> np.ndarray:
    """Population share of each RAM size (published memory-table histogram)."""
    hist = world.TARGETS["ram_histogram"]
    w = np.array([float(hist[f"{g:g}"]["devices"]) for g in RAM_SIZES_GB])
    return w / w.sum()


def random_guids(rng: np.random.Generator, n: int) -> pa.StringArray:
    """n distinct-with-overwhelming-probability 32-hex-digit guids."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    hex_digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.empty((n, 32), dtype=np.uint8)
    text[:, 0::2] = hex_digits[raw >> 4]
    text[:, 1::2] = hex_digits[raw & 15]
    offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(text.tobytes()))


def _conditional_draw(rng: np.random.Generator, given: np.ndarray, given_values: tuple[str, ...],
                      mix: dict[str, dict[str, float]], vocabulary: Vocabulary) -> np.ndarray:
    out = np.empty(len(given), dtype=np.int64)
    for code, value in enumerate(given_values):
        idx = np.flatnonzero(given == code)
        out[idx] = rng.choice(len(vocabulary.values), size=len(idx), p=_shares(mix[value], vocabulary))
    return out


def draw_population(rng: np.random.Generator, n_devices: int) -> Population:
    """Draw n_devices devices."""
    variant = rng.choice(len(world.CPU_VARIANTS), size=n_devices, p=cpu_variant_shares())
    code = np.empty(n_devices, dtype=np.int64)
    for v, code_index in enumerate(_VARIANT_CODE_INDEX):
        idx = np.flatnonzero(variant == v)
        code[idx] = code_index[rng.integers(0, len(code_index), size=len(idx))]
    segments = tuple(world.CHASSIS_BY_SEGMENT)
    segment = np.array([segments.index(v.segment) for v in world.CPU_VARIANTS])[variant]
    processor_class = _VARIANT_IS_XEON[variant].astype(np.int64)
    vendor_w = 1.0 / np.arange(1, len(world.VENDORS) + 1) ** world.VENDOR_ZIPF
    return Population(
        guid=random_guids(rng, n_devices),
        country=rng.choice(len(COUNTRIES.values), size=n_devices, p=country_shares()),
        chassis=_conditional_draw(rng, segment, segments, world.CHASSIS_BY_SEGMENT, CHASSIS),
        os=_conditional_draw(rng, processor_class, PROCESSOR_CLASSES.values, world.OS_MIX, OPERATING_SYSTEMS),
        vendor=rng.choice(len(world.VENDORS), size=n_devices, p=vendor_w / vendor_w.sum()),
        model=rng.integers(0, world.MODELS_PER_VENDOR, size=n_devices),
        ram_gb=RAM_SIZES_GB[rng.choice(len(RAM_SIZES_GB), size=n_devices, p=ram_shares())],
        persona=rng.choice(len(PERSONAS.values), size=n_devices, p=persona_shares()),
        cpu_variant=variant,
        cpu_code=code,
    )
