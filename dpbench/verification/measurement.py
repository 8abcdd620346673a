"""Measured privacy of one release: noise scale, sensitivity, and the effective noise multiplier.

The release of a step is ``o(D) = f(D) + noise``. Calls under K different random streams give K
draws of the noise; the same random stream on ``D`` and on ``D + x`` (common random numbers) gives
the exact shift ``Delta = o(D + x) - o(D)`` caused by one added example x. Noise is modelled as
independent across coordinates with one standard deviation ``s_p`` per parameter tensor (pooled over
the tensor's coordinates and the K draws, so ``(K - 1) * numel_p`` degrees of freedom). Under that
model the release is a Gaussian mechanism whose effective multiplier for the shift Delta is the
whitened (Mahalanobis) one, ``sigma_w = 1 / || (Delta_p / s_p)_p ||``; for isotropic noise it is
``s / ||Delta||``. Because the model may be wrong (noise confined to a subspace), the raw directional
multiplier ``std_k <noise_k, u> / ||Delta||`` with ``u = Delta / ||Delta||`` is measured as well, with
K - 1 degrees of freedom.

Confidence bounds are chi-square bounds on each variance at level ``alpha``: ``upper`` is the value
the true multiplier stays below with probability at least 1 - alpha (per bound used).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from scipy.stats import chi2


@lru_cache(maxsize=4096)
def _chi2_lower(alpha: float, dof: int) -> float:
    return float(chi2.ppf(alpha, dof))


@lru_cache(maxsize=4096)
def _chi2_upper(alpha: float, dof: int) -> float:
    return float(chi2.isf(alpha, dof))


# A tensor (or state leaf) whose shift is below this fraction of the whole shift is treated as unmoved.
SHIFT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class NoiseScale:
    """Per-tensor noise standard deviation of a release and its degrees of freedom."""

    std: tuple[float, ...]
    dof: tuple[int, ...]

    def upper(self, alpha: float) -> tuple[float, ...]:
        return tuple(s * math.sqrt(d / _chi2_lower(alpha, d)) for s, d in zip(self.std, self.dof))

    def lower(self, alpha: float) -> tuple[float, ...]:
        return tuple(s * math.sqrt(d / _chi2_upper(alpha, d)) for s, d in zip(self.std, self.dof))


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).to("cpu", torch.float64) for t in tensors])


# The robust scale is used for a tensor with at least this many contrast values ((K - 1) x its coordinates).
ROBUST_MIN_VALUES = 1000
# Normal consistency of the median absolute value (1 / Phi^-1(3/4)), and the relative standard error of the
# robust scale over sqrt(N): the median of N half-normal values has variance 1 / (4 N f(q)^2), f its density at
# the median q = 0.6745 s, i.e. a relative standard error 1.167 / sqrt(N).
MAD_CONSISTENCY, MAD_RELATIVE_SE = 1.4826, 1.167
# The robust scale's upper bound is ROBUST_SIGMAS standard errors above it: it is below the true std of Gaussian
# noise with probability about Phi(-6) = 1e-9 per tensor.
ROBUST_SIGMAS = 6.0


def robust_scale(contrasts: torch.Tensor) -> float | None:
    """An upper confidence bound on the std of the bulk of a tensor's noise from the Helmert contrasts of its
    noised coordinates (each ``N(0, s^2)`` under the null; coordinates without noise are the ``one-coordinate``
    neighbour's to measure): ``MAD_CONSISTENCY x median |c|``, raised by ``ROBUST_SIGMAS`` standard
    errors; None for fewer than ``ROBUST_MIN_VALUES`` values."""
    n = contrasts.numel()
    if n < ROBUST_MIN_VALUES:
        return None
    median = float(contrasts.abs().reshape(-1).median())
    return MAD_CONSISTENCY * median * (1.0 + ROBUST_SIGMAS * MAD_RELATIVE_SE / math.sqrt(n))


def noise_scale(draws: list[list[torch.Tensor]]) -> tuple[NoiseScale, torch.Tensor]:
    """Per-tensor noise scale from K >= 2 draws (``draws[k][p]``), and the residuals ``[K, n]`` of the
    flattened draws around their mean.

    The scale of a tensor is the std of its draws, or, where the tensor has enough values and it is smaller,
    the upper bound of a robust scale of its Helmert contrasts (:func:`robust_scale`): noise whose variance is
    carried by rare large spikes (a bulk at half the claimed std plus spikes that make the variance right) is
    measured at what its bulk gives, which is what protects a shift most of the time. For Gaussian noise the
    robust bound is above the std except with probability about 1e-9 per tensor, and even then above the true
    std, so an honest plugin's measurement is unchanged."""
    from dpbench.verification.noise_shape import helmert

    k = len(draws)
    stds, dofs = [], []
    contrast_matrix = helmert(k) if k >= 2 else None
    for p in range(len(draws[0])):
        stacked = torch.stack([d[p].detach().reshape(-1).to("cpu", torch.float64) for d in draws])
        residual = stacked - stacked.mean(dim=0)
        dof = (k - 1) * stacked.shape[1]
        std = math.sqrt(float(residual.pow(2).sum()) / dof)
        robust = None
        if contrast_matrix is not None:
            contrasts = contrast_matrix @ stacked
            robust = robust_scale(contrasts[:, contrasts.abs().amax(dim=0) > 0])  # noised coordinates only
        stds.append(std if robust is None else min(std, robust))
        dofs.append(dof)
    flat = torch.stack([flatten(d) for d in draws])
    return NoiseScale(tuple(stds), tuple(dofs)), flat - flat.mean(dim=0)


@dataclass(frozen=True)
class DirectionMeasurement:
    """Effective noise multiplier against one probe example (``inf``: the example did not move the release)."""

    probe: str
    shift_norm: float
    whitened: float
    whitened_upper: float
    directional: float
    directional_upper: float

    @property
    def sigma(self) -> float:
        """Point estimate: the whitened multiplier, unless the raw directional one contradicts the
        noise model (its upper bound is below the whitened estimate)."""
        return self.directional if self.directional_upper < self.whitened else self.whitened

    @property
    def upper(self) -> float:
        return min(self.whitened_upper, self.directional_upper)

    def to_dict(self) -> dict:
        return {**asdict(self), "sigma": self.sigma, "upper": self.upper}


def _whitened(shift: list[torch.Tensor], std: tuple[float, ...], total: float) -> float:
    squared = 0.0
    for delta, s in zip(shift, std):
        norm = float(delta.detach().to(torch.float64).norm())
        if norm <= SHIFT_TOLERANCE * total:
            continue
        if s == 0.0:
            return 0.0
        squared += (norm / s) ** 2
    return math.inf if squared == 0.0 else 1.0 / math.sqrt(squared)


def measure_direction(
    probe: str, shift: list[torch.Tensor], scale: NoiseScale, residuals: torch.Tensor, alpha: float,
    directional_alpha: float | None = None,
) -> DirectionMeasurement:
    """The multiplier against ``shift``; the directional bound is taken at ``directional_alpha`` (default
    ``alpha``), smaller where the direction was chosen from the same draws among many (Bonferroni)."""
    directional_alpha = alpha if directional_alpha is None else directional_alpha
    flat = flatten(shift)
    total = float(flat.norm())
    if total == 0.0:
        return DirectionMeasurement(probe, 0.0, math.inf, math.inf, math.inf, math.inf)
    whitened = _whitened(shift, scale.std, total)
    whitened_upper = _whitened(shift, scale.upper(alpha), total)
    along = residuals @ (flat / total)
    dof = residuals.shape[0] - 1
    directional = math.sqrt(float(along.pow(2).sum()) / dof) / total
    directional_upper = directional * math.sqrt(dof / _chi2_lower(directional_alpha, dof))
    return DirectionMeasurement(probe, total, whitened, whitened_upper, directional, directional_upper)


def combined_multiplier(multipliers: list[float]) -> float:
    """Multiplier of releases that are one Gaussian mechanism together: (sum z_i^-2)^-1/2."""
    if any(z == 0.0 for z in multipliers):
        return 0.0
    total = sum(z**-2 for z in multipliers if math.isfinite(z))
    return math.inf if total == 0.0 else total**-0.5


def std_upper(std: float, dof: int, alpha: float) -> float:
    return std * math.sqrt(dof / _chi2_lower(alpha, dof))
