"""The step ledger: a plain, serialisable record of every private release of a run.

Each optimisation step releases one Poisson-subsampled Gaussian mechanism. The ledger stores, per
step, what an accountant needs (sampling rate, noise multiplier) and what a verifier needs (the
sensitivity the noise was scaled to, who added the noise). Accountants read the ledger; they never
see the mechanism. The ledger translates itself into dp_accounting's ``DpEvent`` vocabulary so that
any accountant of that library can consume exactly the same history.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

import dp_accounting

# Who produced the noise of a step. "harness": the trusted kernel clipped and noised, so the
# recorded multiplier is true by construction. "claimed": a researcher-form plugin added its own
# noise and reported the multiplier through ``get_effective_sigma``.
NOISE_SOURCES = ("harness", "claimed")


@dataclass(frozen=True)
class StepRecord:
    """One private step: a Gaussian release of sensitivity ``sensitivity`` and noise standard deviation
    ``noise_multiplier * sensitivity``, applied to a Poisson sample with rate ``sampling_rate``."""

    step: int
    epoch: int
    sampling_rate: float
    noise_multiplier: float
    sensitivity: float
    mechanism: str
    noise_source: str

    def __post_init__(self) -> None:
        # plain values: a subclass of int, float or str carries its own arithmetic and comparisons into every
        # accountant that reads the ledger (a red team's float subclass in a release's multiplier)
        for name in ("step", "epoch"):
            object.__setattr__(self, name, int.__index__(getattr(self, name)))
        for name in ("sampling_rate", "noise_multiplier", "sensitivity"):
            object.__setattr__(self, name, math.fsum((getattr(self, name),)))
        for name in ("mechanism", "noise_source"):
            object.__setattr__(self, name, str.__str__(getattr(self, name)))
        if not 0.0 < self.sampling_rate <= 1.0:
            raise ValueError(f"step {self.step}: sampling rate {self.sampling_rate} is not in (0, 1]")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(
                f"step {self.step}: mechanism '{self.mechanism}' reported noise multiplier "
                f"{self.noise_multiplier}; a private step needs a finite multiplier > 0"
            )
        if not (math.isfinite(self.sensitivity) and self.sensitivity > 0):
            raise ValueError(f"step {self.step}: sensitivity {self.sensitivity} must be finite and > 0")
        if self.noise_source not in NOISE_SOURCES:
            raise ValueError(f"noise_source must be one of {NOISE_SOURCES}, got {self.noise_source!r}")


class PrivacyLedger:
    """Append-only history of :class:`StepRecord` s."""

    def __init__(self, records: Iterable[StepRecord] = ()) -> None:
        self._records: list[StepRecord] = list(records)

    def append(self, record: StepRecord) -> None:
        self._records.append(record)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[StepRecord]:
        return iter(self._records)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivacyLedger) and self._records == other._records

    def composition(self) -> list[tuple[float, float, int]]:
        """The history as (sampling_rate, noise_multiplier, count) groups, in first-seen order.

        Composition is commutative, so grouping identical steps is exact and keeps accounting
        cost proportional to the number of distinct steps rather than to the number of steps."""
        counts = Counter((r.sampling_rate, r.noise_multiplier) for r in self._records)
        return [(q, z, n) for (q, z), n in counts.items()]

    def to_dp_event(self) -> dp_accounting.DpEvent:
        """The whole history as one dp_accounting event."""
        return dp_accounting.ComposedDpEvent(
            [
                dp_accounting.SelfComposedDpEvent(
                    dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), n
                )
                for q, z, n in self.composition()
            ]
        )

    def to_dicts(self) -> list[dict]:
        return [asdict(r) for r in self._records]

    @classmethod
    def from_dicts(cls, rows: Iterable[dict]) -> "PrivacyLedger":
        return cls(StepRecord(**row) for row in rows)
