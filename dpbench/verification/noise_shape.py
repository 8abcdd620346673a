"""The shape of a release's noise: Gaussian, coordinate by coordinate.

The effective multiplier (:mod:`dpbench.verification.measurement`) reads only second moments, and a
Gaussian accountant is right only for Gaussian noise: noise of the claimed standard deviation but another
shape (Rademacher ``+-zC``, uniform, Laplace, a coarse lattice) has the right variance and no Gaussian
guarantee (Rademacher or lattice noise none at all: a neighbour's shift moves the release off the lattice).
This module tests the shape from the ``K`` draws a probe makes on the real batch under different random
streams, and finds the coordinate with the least noise (for the ``one-coordinate`` neighbour).

**Test.** For coordinate ``i`` the ``K`` draws are, under the null hypothesis, independent
``N(f_i, s_i^2)`` with an unknown scale ``s_i`` of its own. Their ``m = K - 1`` Helmert contrasts are then
independent ``N(0, s_i^2)``, so the contrasts over their norm, ``u_i``, are uniform on the unit sphere
``S^{m-1}`` *whatever* ``s_i`` is (honest noise that differs between tensors or coordinates passes).
The statistic is ``T_i = sum_j u_ij^4`` (a scale-free kurtosis: lower for light-tailed noise such as
Rademacher, uniform or a lattice, higher for heavy-tailed noise such as Laplace), with exact null mean
``3 / (m + 2)``, averaged over the ``n`` noised coordinates (independent under the verifier's noise model:
independent coordinates). The false-alarm bound is Chernoff's, ``P(|mean - mu| >= t) <= exp(-n I(mu + t))
+ exp(-n I(mu - t))``, with ``I`` the rate function of ``T`` under the null: computed from a fixed sample of
``NULL_SAMPLE_SIZE`` uniform directions whose mean and variance are set to their exact values, so the
bound is exact to second order and rigorous up to the sample's third- and higher-order cumulants. A test
fails when that bound is at most its level: an honest Gaussian plugin with independent coordinates fails
with probability at most the level, and in practice far less (Chernoff's bound is loose by a factor of
about ``z sqrt(2 pi)`` at ``z`` standard deviations).

Power: per coordinate the shift of the mean of ``T`` is 0.55 (Rademacher), 0.38 (Laplace), 0.31
(uniform) null standard deviations at ``K = 8``, so ``n`` coordinates give about ``0.3 sqrt(n)``
standard deviations: a few hundred coordinates for Rademacher, a few thousand for uniform noise, at
one probe; the pool over a run's probes (:class:`ShapePool`) adds up every probe's coordinates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.special import logsumexp

# The level of each test (a probe's, and the run's pool at that probe): an honest Gaussian plugin fails
# either with probability at most 2 x SHAPE_ALPHA per probe.
SHAPE_ALPHA = 1e-7
NULL_SAMPLE_SIZE, BINS = 1 << 17, 4096
# The tilts of the rate function's grid: geometric from MIN_TILT to MAX_TILT each side of 0 (beyond MAX_TILT
# the bound is already astronomically small; consecutive tilts 7% apart lose under 0.1% of the rate).
MIN_TILT, MAX_TILT, TILTS = 1e-2, 4e3, 200


def helmert(k: int) -> torch.Tensor:
    """The ``(k - 1) x k`` Helmert matrix: orthonormal rows, each orthogonal to the all-ones vector."""
    rows = torch.zeros(k - 1, k, dtype=torch.float64)
    for j in range(1, k):
        rows[j - 1, :j] = 1.0 / math.sqrt(j * (j + 1))
        rows[j - 1, j] = -j / math.sqrt(j * (j + 1))
    return rows


def coordinate_stds(residuals: torch.Tensor) -> torch.Tensor:
    """Per-coordinate noise standard deviation from the ``[K, n]`` residuals of ``K`` draws around their mean
    (``K - 1`` degrees of freedom each)."""
    return (residuals.pow(2).sum(dim=0) / (residuals.shape[0] - 1)).sqrt()


def quietest_coordinate(residuals: torch.Tensor) -> int:
    """The flat index of the coordinate with the least measured noise. It is chosen among all ``n`` coordinates
    from the same draws that then measure it, so its bound must be taken at ``alpha / n`` (Bonferroni)."""
    return int(torch.argmin(coordinate_stds(residuals)))


def coordinate_kurtosis(residuals: torch.Tensor) -> torch.Tensor:
    """``T_i = sum_j u_ij^4`` for every coordinate whose draws are not all equal (``u_i``: its Helmert
    contrasts over their norm); uniform directions give mean ``3 / (m + 2)``."""
    contrasts = helmert(residuals.shape[0]) @ residuals.to(torch.float64)
    norms = contrasts.norm(dim=0)
    noised = norms > 0
    return (contrasts[:, noised] / norms[noised]).pow(4).sum(dim=0)


def null_mean(m: int) -> float:
    return 3.0 / (m + 2)


def null_variance(m: int) -> float:
    """Exact variance of ``T`` for ``u`` uniform on ``S^{m-1}``, from its moments ``E u_j^8 = 105 / P`` and
    ``E u_j^4 u_l^4 = 9 / P``, ``P = m (m + 2) (m + 4) (m + 6)``."""
    p = m * (m + 2) * (m + 4) * (m + 6)
    return m * 105 / p + m * (m - 1) * 9 / p - null_mean(m) ** 2


@lru_cache(maxsize=8)
def null_sample(m: int) -> np.ndarray:
    """``NULL_SAMPLE_SIZE`` values of ``T`` under the null (a fixed seed), their mean and variance set exactly."""
    rng = np.random.default_rng(20240611 + m)
    directions = rng.standard_normal((NULL_SAMPLE_SIZE, m))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    sample = (directions**4).sum(axis=1)
    centred = sample - sample.mean()
    return null_mean(m) + centred * math.sqrt(null_variance(m)) / centred.std()


@lru_cache(maxsize=8)
def null_cumulants(m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lambda, log E exp(lambda T))`` under the null on a fixed grid of tilts (``TILTS`` geometric steps each
    side of 0, up to ``MAX_TILT``). The sample is binned (``BINS`` bins), each value moved to the edge of its
    bin that makes ``exp(lambda T)`` larger: the cumulants only grow, so the rate only shrinks (conservative)."""
    positive = np.geomspace(MIN_TILT, MAX_TILT, TILTS)
    tilts = np.concatenate([-positive[::-1], [0.0], positive])
    counts, edges = np.histogram(null_sample(m), bins=BINS)
    kept = counts > 0
    log_weights = np.log(counts[kept] / counts.sum())
    upper, lower = edges[1:][kept], edges[:-1][kept]
    values = np.where(tilts[:, None] > 0, upper[None, :], lower[None, :])
    return tilts, logsumexp(tilts[:, None] * values + log_weights[None, :], axis=1)


def rate(mean: float, m: int) -> float:
    """Chernoff's rate ``I(mean) = sup_lambda (lambda mean - log E exp(lambda T))`` under the null, the sup taken
    over the grid of :func:`null_cumulants` (a lower bound on ``I``: the false-alarm bound only grows)."""
    tilts, cumulants = null_cumulants(m)
    return max(0.0, float(np.max(tilts * mean - cumulants)))


@dataclass(frozen=True)
class ShapeTest:
    """The Gaussianity test of one probe (or of a run's pool of probes)."""

    coordinates: int  # noised coordinates tested
    mean: float  # average of T over them
    expected: float  # its null mean, 3 / (m + 2)
    log_bound: float  # log of Chernoff's two-sided bound on the false-alarm probability
    level: float

    @property
    def gaussian(self) -> bool:
        return self.log_bound > math.log(self.level)

    def to_dict(self) -> dict:
        return {**asdict(self), "gaussian": self.gaussian}


def shape_test(total: float, coordinates: int, m: int, level: float) -> ShapeTest:
    """The test of ``coordinates`` values of ``T`` summing to ``total`` (``m`` contrasts each) at ``level``."""
    if coordinates == 0:
        return ShapeTest(0, math.nan, null_mean(m), 0.0, level)
    mean = total / coordinates
    distance = abs(mean - null_mean(m))
    log_bound = float(np.logaddexp(
        -coordinates * rate(null_mean(m) + distance, m), -coordinates * rate(null_mean(m) - distance, m)
    ))
    return ShapeTest(coordinates, mean, null_mean(m), min(0.0, log_bound), level)


@dataclass
class ShapePool:
    """The run's sum of ``T`` over every probe's coordinates: independent under the null across probes (each
    probe's streams are fresh), so the pool tests a plugin's shape with all the coordinates it was probed on."""

    total: float = 0.0
    coordinates: int = 0

    def add(self, values: torch.Tensor) -> None:
        self.total += float(values.sum())
        self.coordinates += int(values.numel())


# ------------------------------------------------------------------------------------------------ atoms
# The atom test's level: an honest plugin's ties exceed the allowance with probability at most this per probe.
ATOM_ALPHA = 1e-7
# A coordinate is tested only where its measured noise std is at least this many times its values' spacing (the
# step of the values' floating-point grid at their largest magnitude; the grid is the coarsest of bfloat16,
# float16 and the output's dtype that the values lie on): rounding then makes two continuous draws equal with
# probability at most ``1 / (sqrt(pi) x ATOM_MIN_SPACINGS)`` per pair.
ATOM_MIN_SPACINGS = 200.0
# The tie probability of each pair is bounded with the true std at half the measured one (at K = 8 a measured std
# reads twice the true one with probability 2e-4; and the mean of 1 / measured std over many coordinates is
# 1.13 / true std, so the sum of the bounds is conservative by about 2.3x).
ATOM_STD_MARGIN = 2.0


@dataclass(frozen=True)
class AtomTest:
    """Exact ties between a coordinate's draws under different random streams: continuous noise never has two
    draws exactly equal, up to rounding; noise with an atom (exactly zero noise on a share of coordinates in
    each draw, a lattice) has them at a fixed rate."""

    coordinates: int  # coordinates tested (noise std >= ATOM_MIN_SPACINGS spacings)
    ties: int  # equal pairs of adjacent sorted draws, summed over those coordinates
    allowance: int  # the most ties an honest plugin shows with probability 1 - level
    level: float

    @property
    def gaussian(self) -> bool:
        return self.ties <= self.allowance

    def to_dict(self) -> dict:
        return {**asdict(self), "gaussian": self.gaussian}


def value_grid(values: torch.Tensor) -> torch.dtype:
    """The coarsest floating-point type all ``values`` are exactly representable in: bfloat16, float16 or
    their own (a plugin that computes in half precision and returns float32, as mixed precision does, has
    values on float16's grid, where honest draws tie far more often than on float32's)."""
    for narrow in (torch.bfloat16, torch.float16):
        if torch.finfo(narrow).bits >= torch.finfo(values.dtype).bits:
            continue
        finite = values.abs().max() <= torch.finfo(narrow).max if values.numel() else True
        if finite and torch.equal(values.to(narrow).to(values.dtype), values):
            return narrow
    return values.dtype


def atom_test(draws: list[list[torch.Tensor]], level: float = ATOM_ALPHA) -> AtomTest:
    """Count exact ties between draws of the same coordinate (``draws[k][p]``: draw ``k`` of tensor ``p``) over
    the coordinates whose noise is far above their values' floating-point spacing, against a Poisson bound.

    Under continuous noise of std ``s`` a pair of draws of a coordinate is equal only when rounding to the
    output's dtype merges them: their difference, ``N(0, 2 s^2)``, must be under the spacing ``u`` of the values,
    probability at most ``u / (sqrt(pi) s)``. The expected number of tied pairs is at most ``lambda = sum_i
    C(K, 2) u_i ATOM_STD_MARGIN / (sqrt(pi) s_i)`` over the tested coordinates (``s_i`` measured; the margin
    covers a measured std reading high), and the ties (a sum of rare, nearly independent indicators) exceed
    Poisson(lambda)'s upper ``level`` quantile with probability about ``level``. Coordinates whose noise is
    within ``ATOM_MIN_SPACINGS`` spacings of their values (a float16 output, noise tiny against the value)
    are not tested, so honest noise that rounding makes discrete is never charged."""
    from scipy.stats import poisson

    k = len(draws)
    coordinates, ties, expected = 0, 0, 0.0
    for p in range(len(draws[0])):
        dtype = draws[0][p].dtype
        if not dtype.is_floating_point:
            continue
        stacked = torch.stack([d[p].detach().reshape(-1).to("cpu") for d in draws])
        grid = value_grid(stacked)
        values = stacked.to(torch.float64)
        largest = values.abs().amax(dim=0).clamp_min(torch.finfo(grid).tiny)
        spacing = torch.finfo(grid).eps * torch.exp2(torch.floor(torch.log2(largest)))  # the grid's step there
        std = values.std(dim=0)
        tested = std >= ATOM_MIN_SPACINGS * spacing
        if not bool(tested.any()):
            continue
        ordered = stacked[:, tested].sort(dim=0).values
        ties += int((ordered[1:] == ordered[:-1]).sum())
        coordinates += int(tested.sum())
        expected += float((spacing[tested] / std[tested]).sum()) * k * (k - 1) / 2 * ATOM_STD_MARGIN / math.sqrt(math.pi)
    allowance = int(poisson.isf(level, expected)) if expected > 0 else 0
    return AtomTest(coordinates, ties, allowance, level)
