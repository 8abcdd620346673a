"""One-shot Gaussian release of a sum of bounded per-example statistic vectors over the whole training set.

Some workloads need a few statistics of the training data besides a model (the telemetry synthesiser
calibrates its samples to released marginals). The kernel releases them once, before training:
each example contributes a vector; the kernel clips every vector to L2 norm ``bound``, so adding or
removing one example moves the sum by at most ``bound`` (the sensitivity, whatever the caller hands
in), and adds N(0, (noise_multiplier * bound)^2) to each coordinate of the sum. That is the Gaussian
mechanism without subsampling; it enters the ledger as one record with sampling rate 1, so the
accountants compose it with the training steps and noise calibration leaves room for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from dpbench.privacy.ledger import StepRecord
from dpbench.privacy.noise import NoiseSource, standard_normal

RELEASE_STEP = -1
"""The ledger step (and epoch) of releases made before the first training step."""


@dataclass(frozen=True)
class StatisticsRelease:
    """What is released: the name of the statistic, its per-example L2 bound and its noise multiplier."""

    name: str
    bound: float
    noise_multiplier: float

    def __init_subclass__(cls, **kwargs: object) -> None:
        # the noise release_sum adds and the record the ledger keeps both come from these three plain values; a
        # subclass could answer noise_std or record() differently (a red team's noised with std 1e-12 while
        # recording multiplier 8)
        raise TypeError("StatisticsRelease cannot be subclassed: declare a release as StatisticsRelease(name, bound, "
                        "noise_multiplier)")

    def __post_init__(self) -> None:
        if type(self.name) is not str:
            raise TypeError(f"a release's name must be a str, got {type(self.name).__name__}")
        for field in ("bound", "noise_multiplier"):  # plain floats (a float subclass's arithmetic is its own)
            object.__setattr__(self, field, math.fsum((getattr(self, field),)))
        if not (math.isfinite(self.bound) and self.bound > 0):
            raise ValueError(f"release '{self.name}': bound must be finite and > 0, got {self.bound}")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(
                f"release '{self.name}': noise multiplier must be finite and > 0, got {self.noise_multiplier}; "
                "a statistic of private data cannot be released without noise"
            )

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise on each coordinate of the released sum."""
        return self.noise_multiplier * self.bound

    def record(self) -> StepRecord:
        """The ledger entry of this release (full-data Gaussian mechanism: sampling rate 1)."""
        return StepRecord(step=RELEASE_STEP, epoch=RELEASE_STEP, sampling_rate=1.0,
                          noise_multiplier=self.noise_multiplier, sensitivity=self.bound,
                          mechanism=self.name, noise_source="harness")


def clip_rows(rows: torch.Tensor, bound: float) -> torch.Tensor:
    """Each row scaled down to L2 norm at most ``bound`` (rows within the bound are unchanged)."""
    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    return rows * torch.clamp(bound / norms.clamp_min(1e-12), max=1.0)


def release_sum(chunks: Iterable[torch.Tensor], release: StatisticsRelease, source: NoiseSource) -> torch.Tensor:
    """The noised sum (float64) of every row of every chunk ``[n_i, d]``, each row clipped to ``release.bound``.

    A row that is not finite in every entry (a statistic that overflowed, an input holding NaN) contributes zero,
    which is within the bound: refusing the release instead would make whether the run goes on a function of
    that one example."""
    if type(release) is not StatisticsRelease:
        raise TypeError(f"release_sum needs a StatisticsRelease, got {type(release).__name__}")
    # its values read again as plain values (a frozen dataclass can still be changed with object.__setattr__: a
    # tenth red team swapped a float subclass into one after construction)
    release = StatisticsRelease(release.name, release.bound, release.noise_multiplier)
    total: torch.Tensor | None = None
    for chunk in chunks:
        if chunk.dim() != 2:
            raise ValueError(f"release '{release.name}': chunks must be [rows, d], got shape {tuple(chunk.shape)}")
        rows = chunk.to(torch.float64)
        rows = torch.where(torch.isfinite(rows).all(dim=1, keepdim=True), rows, torch.zeros_like(rows))
        clipped = clip_rows(rows, release.bound).sum(dim=0)
        total = clipped if total is None else total + clipped
    if total is None:
        raise ValueError(f"release '{release.name}': no rows to release")
    noise = standard_normal(total.shape, torch.float64, total.device, source)
    return total + release.noise_std * noise
