"""Plugins whose second moments are right and whose guarantee is broken anyway, one per class of attack a red
team found VERIFIED (noise of the wrong shape, noise missing on some coordinates, clipping only above a
large norm, a row released by its position), each with variants the verifier was not written against; and
honest plugins of several shapes and batch sizes, which must stay VERIFIED.

The shape test is checked against its stated false-alarm bound by simulation, independently of the
verifier: the empirical rate of Gaussian noise failing at a loose level stays below that level."""

from __future__ import annotations

import math

import pytest
import torch

from dpbench.verification.noise_shape import coordinate_kurtosis, shape_test
from dpbench.verification.preflight import FakeRun, plugin_factory, preflight
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin

RUN = FakeRun()
# A wider model for the shape of the noise: 1,212 coordinates (the power grows with sqrt(coordinates)).
WIDE = FakeRun(shapes=(torch.Size([32, 32]), torch.Size([32]), torch.Size([4, 8, 2, 2]), torch.Size([8, 4])))


class Honest:
    """Flat clipping to C, Gaussian noise N(0, (zC)^2) per coordinate, divided by the expected batch size."""

    def __init__(self, max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs, target_epsilon, target_delta):
        self.max_grad_norm = float(max_grad_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.expected_batch_size = float(batch_size)

    def get_effective_sigma(self, step, epoch):
        return self.noise_multiplier

    def std(self) -> float:
        return self.noise_multiplier * self.max_grad_norm

    def norms(self, grads):
        return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))

    def clipped_sum(self, grads, scale=None):
        if scale is None:
            scale = torch.clamp(self.max_grad_norm / (self.norms(grads) + 1e-12), max=1.0)
        return [torch.einsum("b,b...->...", scale, g) for g in grads]

    def noise(self, shape) -> torch.Tensor:
        return self.std() * torch.randn(shape)

    def clip_and_noise(self, grads, step, epoch):
        return [(s + self.noise(s.shape)) / self.expected_batch_size for s in self.clipped_sum(grads)]


# ------------------------------------------------------------------- noise of the right std, wrong shape
class RademacherNoise(Honest):
    def noise(self, shape):
        return self.std() * (2.0 * torch.randint(0, 2, shape).float() - 1.0)


class LaplaceNoise(Honest):
    def noise(self, shape):
        return torch.distributions.Laplace(0.0, self.std() / math.sqrt(2.0)).sample(shape)


class UniformNoise(Honest):
    def noise(self, shape):
        return self.std() * math.sqrt(3.0) * (2.0 * torch.rand(shape) - 1.0)


class ThreePointLattice(Honest):
    """-a, 0, a with probability 1/3 each: variance 2 a^2 / 3."""

    def noise(self, shape):
        return self.std() * math.sqrt(1.5) * (torch.randint(0, 3, shape).float() - 1.0)


# ------------------------------------------------------------------------ noise missing on coordinates
class HalfCoordinateNoise(Honest):
    """Even coordinates get sqrt(2) zC, odd ones none: per-tensor std and random directions look right."""

    def noise(self, shape):
        flat = torch.zeros(shape).reshape(-1)
        flat[0::2] = math.sqrt(2.0) * self.std() * torch.randn(flat[0::2].shape)
        return flat.reshape(shape)


class OneCoordinateUnnoised(Honest):
    """Noise everywhere but on one coordinate in the middle of the first tensor."""

    def noise(self, shape):
        flat = super().noise(shape).reshape(-1)
        if len(shape) == 2:
            flat[flat.numel() // 2 + 3] = 0.0
        return flat.reshape(shape)


# -------------------------------------------------------------------- clipping only above a large norm
class ClipsOnlyAbove100C(Honest):
    """Leaves every example of norm up to 100 C unclipped: sensitivity 100 C."""

    def clip_and_noise(self, grads, step, epoch):
        n = self.norms(grads)
        scale = torch.where(n > 100 * self.max_grad_norm, self.max_grad_norm / n, torch.ones_like(n))
        return [(s + self.noise(s.shape)) / self.expected_batch_size for s in self.clipped_sum(grads, scale)]


class DropsHugeWithLowNoise(Honest):
    """Clips to C but drops examples above 300 C as outliers, and adds 1/50 of the noise."""

    def clip_and_noise(self, grads, step, epoch):
        n = self.norms(grads)
        scale = torch.clamp(self.max_grad_norm / (n + 1e-12), max=1.0) * (n <= 300 * self.max_grad_norm)
        return [(s + 0.02 * self.noise(s.shape)) / self.expected_batch_size for s in self.clipped_sum(grads, scale)]


# ------------------------------------------------------------------------------ a row by its position
class LeaksFirstRow(Honest):
    def clip_and_noise(self, grads, step, epoch):
        return [o + g[0] / self.expected_batch_size for o, g in zip(super().clip_and_noise(grads, step, epoch), grads)]


class LeaksARowThatMovesWithTheStep(Honest):
    """Releases, besides an honest gradient, row (7 step + 3) mod 16 raw: never the first, rarely the last."""

    def clip_and_noise(self, grads, step, epoch):
        row = (7 * step + 3) % 16
        return [o + g[row] / self.expected_batch_size for o, g in zip(super().clip_and_noise(grads, step, epoch), grads)]


BROKEN = [
    (RademacherNoise, RUN, "noise-not-gaussian"),
    (LaplaceNoise, WIDE, "noise-not-gaussian"),
    (UniformNoise, WIDE, "noise-not-gaussian"),
    (ThreePointLattice, WIDE, "noise-not-gaussian"),
    (HalfCoordinateNoise, RUN, "one-coordinate"),
    (OneCoordinateUnnoised, RUN, "one-coordinate"),
    (ClipsOnlyAbove100C, RUN, "norm-"),
    (DropsHugeWithLowNoise, RUN, ""),
    (LeaksFirstRow, RUN, "every-layer"),
    (LeaksARowThatMovesWithTheStep, RUN, ""),
]


@pytest.mark.parametrize("cls,run,reason", BROKEN, ids=[c.__name__ for c, *_ in BROKEN])
def test_a_plugin_with_the_right_variance_and_a_broken_guarantee_is_a_violation(cls, run, reason):
    result = preflight(plugin_factory(cls, run), run, seed=0, steps=6, draws=8, name=cls.__name__)
    report = result.report
    assert report.verdict == "VIOLATION", report.summary()
    assert any(reason in f.probe for f in report.findings), report.summary()
    assert result.epsilon.verified.primary > result.epsilon.claimed.primary


def test_clipping_only_above_the_largest_rung_but_one_is_measured_at_its_sensitivity():
    """Unclipped up to 100 C: the ladder's rungs below 100 C measure multipliers of z C / r, far below z."""
    result = preflight(plugin_factory(ClipsOnlyAbove100C, RUN), RUN, seed=1, steps=4, draws=8)
    for probe in result.report.probes:
        assert probe.measured < 0.1 * probe.claimed


# --------------------------------------------------------------------------------------------- honest
class OverNoisedFirstTensor(Honest):
    """Correct: twice the noise on the first tensor (per-tensor scales differ)."""

    def clip_and_noise(self, grads, step, epoch):
        sums = self.clipped_sum(grads)
        return [(s + (2.0 if i == 0 else 1.0) * self.noise(s.shape)) / self.expected_batch_size for i, s in enumerate(sums)]


HONEST_RUNS = [
    ("flat-clip", FlatClipPlugin, RUN),
    ("wide", FlatClipPlugin, WIDE),
    ("one-tensor", Honest, FakeRun(shapes=(torch.Size([300]),))),
    ("conv-shapes", OverNoisedFirstTensor, FakeRun(shapes=(torch.Size([6, 3, 3, 3]), torch.Size([6]), torch.Size([10, 24])))),
    ("small-batch", Honest, FakeRun(batch_size=4, dataset_size=200)),
    ("large-batch", FlatClipPlugin, FakeRun(batch_size=256, dataset_size=2048)),
]


@pytest.mark.parametrize("name,cls,run", HONEST_RUNS, ids=[n for n, *_ in HONEST_RUNS])
def test_an_honest_gaussian_plugin_stays_verified(name, cls, run):
    for seed in range(2):
        result = preflight(plugin_factory(cls, run), run, seed=seed, draws=8, name=name)
        assert result.report.verdict == "VERIFIED", f"seed {seed}:\n{result.report.summary()}"
        assert all(p.noise_shape["run"]["gaussian"] for p in result.report.probes)


# ------------------------------------------------------------------------------------- the shape test
def shape_log_bound(noise: torch.Tensor) -> float:
    """The shape test's log false-alarm bound for ``[K, n]`` draws."""
    values = coordinate_kurtosis(noise - noise.mean(dim=0))
    return shape_test(float(values.sum()), values.numel(), noise.shape[0] - 1, 1e-7).log_bound


@pytest.mark.parametrize("draws,coordinates", [(8, 212), (16, 1000), (4, 5000)])
def test_gaussian_noise_fails_the_shape_test_no_more_often_than_its_stated_level(draws, coordinates):
    """Independent check of the bound by simulation: Gaussian noise with a different scale per coordinate
    (the test must not need equal scales); at level 0.02, 300 runs fail well under 2% of the time."""
    generator = torch.Generator().manual_seed(draws * coordinates)
    failures = 0
    for _ in range(300):
        scales = torch.exp(2.0 * torch.randn(coordinates, generator=generator, dtype=torch.float64))
        noise = scales * torch.randn(draws, coordinates, generator=generator, dtype=torch.float64)
        failures += shape_log_bound(noise) <= math.log(0.02)
    assert failures <= 6


@pytest.mark.parametrize(
    "sample",
    [
        lambda g, shape: 2.0 * torch.randint(0, 2, shape, generator=g).double() - 1.0,
        lambda g, shape: torch.log(torch.rand(shape, generator=g, dtype=torch.float64)) * torch.sign(torch.randn(shape, generator=g)),
        lambda g, shape: torch.rand(shape, generator=g, dtype=torch.float64),
    ],
    ids=["rademacher", "laplace", "uniform"],
)
def test_noise_of_another_shape_fails_the_shape_test_far_beyond_its_level(sample):
    noise = sample(torch.Generator().manual_seed(0), (8, 2000))
    assert shape_log_bound(noise) < math.log(1e-7) - 20
