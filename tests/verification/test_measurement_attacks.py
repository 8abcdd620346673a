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

from dpbench.verification.measurement import noise_scale
from dpbench.verification.noise_shape import atom_test, coordinate_kurtosis, shape_test
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


# ------------------------------------------------------------------------------ noise with an atom
class SparseExactNoise(Honest):
    """A share of coordinates gets exactly zero noise in each draw; the rest a Gaussian-Rademacher blend tuned so
    the shape test's fourth-moment statistic matches a Gaussian's (the red team's sparse_exact)."""

    share, weight = 0.1, 0.4883

    def noise(self, shape):
        blend = (1 - self.weight) ** 0.5 * torch.randn(shape) + self.weight**0.5 * (2.0 * torch.randint(0, 2, shape).float() - 1.0)
        blend = torch.where(torch.rand(shape) < self.share, torch.zeros(shape), blend)
        return self.std() * blend / (1 - self.share) ** 0.5


class SparseExactFewAtoms(SparseExactNoise):
    share, weight = 0.03, 0.2


class GaussianOnALattice(Honest):
    """Gaussian noise rounded to a grid of zC / 8: the right variance, a discrete distribution."""

    def noise(self, shape):
        step = self.std() / 8
        return torch.round(super().noise(shape) / step) * step


class SparseExactOnHalfGrid(SparseExactNoise):
    """The atoms, with values rounded to float16's grid and released as float32 (so ties are judged on that grid)."""

    def clip_and_noise(self, grads, step, epoch):
        return [o.half().float() for o in super().clip_and_noise(grads, step, epoch)]


@pytest.mark.parametrize("cls", [SparseExactNoise, SparseExactFewAtoms, GaussianOnALattice, SparseExactOnHalfGrid])
def test_noise_with_an_atom_is_not_gaussian(cls):
    result = preflight(plugin_factory(cls, WIDE), WIDE, seed=0, steps=3, draws=8, name=cls.__name__)
    assert result.report.verdict == "VIOLATION", result.report.summary()
    assert any("noise-not-gaussian" in f.probe for f in result.report.findings)
    assert all(not p.noise_shape["atoms"]["gaussian"] for p in result.report.probes)


class TinyNoiseOnLargeValues(Honest):
    """Honest, with float32 values so large against the noise that rounding makes many draws equal."""

    def clip_and_noise(self, grads, step, epoch):
        return [o + 1e4 for o in super().clip_and_noise(grads, step, epoch)]

    def get_effective_sigma(self, step, epoch):
        return self.noise_multiplier


class HalfPrecisionOutput(Honest):
    """Honest noise released in float16 (ties from rounding are common there)."""

    def clip_and_noise(self, grads, step, epoch):
        return [o.half().float() for o in super().clip_and_noise(grads, step, epoch)]


@pytest.mark.parametrize("seed", range(3))
def test_honest_gaussian_draws_pass_the_atom_test(seed):
    """Directly: float32 and float16 draws of honest noise of many scales relative to their values, including
    noise far below a value's spacing (all draws equal), are never charged."""
    g = torch.Generator().manual_seed(seed)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for n in (50, 1000, 20000):
            for ratio in (1e-9, 1e-4, 1e-2, 1.0, 100.0):
                base = torch.randn(n, generator=g)
                draws = [[(base + ratio * torch.randn(n, generator=g)).to(dtype)] for _ in range(8)]
                assert atom_test(draws).gaussian, (dtype, n, ratio)
                on_grid = [[d[0].float()] for d in draws]  # narrow values released as float32
                assert atom_test(on_grid).gaussian, (dtype, n, ratio, "float32")


@pytest.mark.parametrize("cls", [TinyNoiseOnLargeValues, HalfPrecisionOutput])
def test_an_honest_plugin_whose_rounding_merges_draws_stays_verified(cls):
    result = preflight(plugin_factory(cls, RUN), RUN, seed=0, steps=4, draws=8)
    assert result.report.verdict == "VERIFIED", result.report.summary()


# ------------------------------------------------------------------- variance carried by rare spikes
class SpikyBulkNoise(Honest):
    """A bulk at ``bulk`` x the claimed std (a Gaussian-Rademacher blend) plus, with probability ``p``, a spike
    that makes each coordinate's variance right (the red team's spiky_bulk): a shift on a coordinate sees,
    most of the time, only the bulk."""

    p, weight, bulk = 0.005, 0.5243, 0.5
    min_size = 0

    def noise(self, shape):
        if torch.Size(shape).numel() < self.min_size:
            return super().noise(shape)
        sign = lambda: 2.0 * torch.randint(0, 2, shape).float() - 1.0
        bulk = self.bulk * ((1 - self.weight) ** 0.5 * torch.randn(shape) + self.weight**0.5 * sign())
        spike = (1 - self.bulk**2) ** 0.5 / self.p**0.5 * sign() * (torch.rand(shape) < self.p).float()
        return self.std() * (bulk + spike)


class SpikyBigTensorsNoise(SpikyBulkNoise):
    """Spikes only in tensors of at least 1000 coordinates; small tensors honest."""

    min_size = 1000


class GaussianBulkRareSpikes(SpikyBulkNoise):
    """A Gaussian bulk at 0.6 of the std, spikes with probability 0.02."""

    p, weight, bulk = 0.02, 0.0, 0.6


@pytest.mark.parametrize("cls", [SpikyBulkNoise, SpikyBigTensorsNoise, GaussianBulkRareSpikes])
def test_noise_whose_variance_is_carried_by_rare_spikes_is_measured_at_its_bulk(cls):
    result = preflight(plugin_factory(cls, WIDE), WIDE, seed=0, steps=3, draws=8, name=cls.__name__)
    assert result.report.verdict == "VIOLATION", result.report.summary()
    assert all(p.measured < 0.8 * p.claimed for p in result.report.probes), result.report.summary()


@pytest.mark.parametrize("seed", range(4))
def test_the_robust_scale_does_not_lower_an_honest_gaussian_tensors_scale(seed):
    """Gaussian draws of tensors of several sizes and scales: the scale used is the std (the robust bound, six
    standard errors up, is above it)."""
    g = torch.Generator().manual_seed(seed)
    for n in (143, 144, 1000, 20000):
        for s in (1e-6, 1.0, 30.0):
            draws = [[torch.randn(n, generator=g) + s * torch.randn(n, generator=g)] for _ in range(8)]
            draws = [[d[0] * 1.0] for d in draws]
            stacked = torch.stack([d[0].double() for d in draws])
            std = float((stacked - stacked.mean(0)).pow(2).sum() / (7 * n)) ** 0.5
            assert noise_scale(draws)[0].std[0] == pytest.approx(std, rel=1e-12), (n, s)


# ------------------------------------------------------------------- clipping missing far above the ladder
class ClipsOnlyBelow(Honest):
    """Clips every example up to ``limit`` x C, and none above (the red team's beyond_ladder at 1e6 C)."""

    limit = 1e6

    def clip_and_noise(self, grads, step, epoch):
        n = self.norms([g.double() for g in grads])
        scale = torch.clamp(self.max_grad_norm / (n + 1e-12), max=1.0)
        scale = torch.where(n > self.limit * self.max_grad_norm, torch.ones_like(scale), scale).float()
        return [(s + self.noise(s.shape)) / self.expected_batch_size for s in self.clipped_sum(grads, scale)]


class ClipsOnlyBelow1e11C(ClipsOnlyBelow):
    limit = 1e11


class ClipsOnlyBelow1e14C(ClipsOnlyBelow):
    limit = 1e14


@pytest.mark.parametrize("cls", [ClipsOnlyBelow, ClipsOnlyBelow1e11C, ClipsOnlyBelow1e14C])
def test_clipping_missing_far_above_the_near_ladder_is_a_violation(cls):
    result = preflight(plugin_factory(cls, RUN), RUN, seed=0, steps=3, draws=8, name=cls.__name__)
    assert result.report.verdict == "VIOLATION", result.report.summary()
    assert all(p.measured < 1e-3 * p.claimed for p in result.report.probes), result.report.summary()


class VectorNormFloat32(Honest):
    """Honest, computing each example's norm with torch.linalg.vector_norm in float32 (as many plugins do)."""

    def norms(self, grads):
        return torch.linalg.vector_norm(torch.cat([g.flatten(1) for g in grads], dim=1), dim=1)


class SquaredNormFloat32(Honest):
    """Honest, with squared norms summed in float32 (the far rungs' squares must not overflow)."""

    def norms(self, grads):
        return sum(g.flatten(1).pow(2).sum(1) for g in grads).sqrt()


@pytest.mark.parametrize("cls", [VectorNormFloat32, SquaredNormFloat32])
@pytest.mark.parametrize("clip", [0.1, 1.0, 10.0])
def test_an_honest_float32_plugin_stays_verified_at_the_far_rungs(cls, clip):
    run = FakeRun(max_grad_norm=clip)
    result = preflight(plugin_factory(cls, run), run, seed=int(clip * 10), steps=3, draws=8)
    assert result.report.verdict == "VERIFIED", result.report.summary()
    names = {d["probe"] for p in result.report.probes for d in p.directions}
    assert sum(name.endswith("e+15C") for name in names) >= 1, names


# ------------------------------------------------------- the release told apart as the step's first call
_FIRST_CALLS: dict = {}  # module-level state every copy shares


def _first_calls_default(store={}):  # a mutable default: the same dict at every call
    return store


def _first_calls_closure():
    store: dict = {}
    return lambda: store


_first_calls_in_closure = _first_calls_closure()


class UnnoisedFirstCall(Honest):
    """Releases the first call of each step without noise (the red team's coordinated_draws): state kept where
    every copy sees it tells the release apart; later calls on another batch (neighbours) are noise-free too, so
    their shifts are exact, and later calls on the same batch (the draws) add a shared m and a fresh e, so the
    draws' contrasts look like Gaussian noise of the claimed scale."""

    def store(self) -> dict:
        return _FIRST_CALLS

    def clip_and_noise(self, grads, step, epoch):
        store = self.store()
        clean = [s / self.expected_batch_size for s in self.clipped_sum(grads)]
        if store.get("step") != step:  # the release
            store.clear()
            store.update(step=step, batch=[g.clone() for g in grads])
            return clean
        if not all(a.shape == g.shape and torch.equal(a, g) for a, g in zip(store["batch"], grads)):
            return clean  # a neighbour: no noise, like the release, so its shift is exact
        # the verifier's draws: a shared m and a fresh e, so the contrasts of (release, draws) look iid
        scale = self.std() / self.expected_batch_size
        store.setdefault("m", [scale * torch.randn(c.shape) for c in clean])
        return [c + m + scale * torch.randn(c.shape) for c, m in zip(clean, store["m"])]


class UnnoisedFirstCallDefault(UnnoisedFirstCall):
    def store(self):
        return _first_calls_default()


class UnnoisedFirstCallClosure(UnnoisedFirstCall):
    def store(self):
        return _first_calls_in_closure()


class UnnoisedFirstCallClassAttribute(UnnoisedFirstCall):
    calls: dict = {}

    def store(self):
        return type(self).calls


class UnnoisedFirstCallElsewhere(UnnoisedFirstCall):
    """The same, with the state in another library's module: the probe does not restore it, but a call from the
    release's state, batch and stream does not give the release again."""

    def store(self):
        import fractions

        return fractions.__dict__.setdefault("_dpbench_test_first_calls", {})


COORDINATED = [
    UnnoisedFirstCall, UnnoisedFirstCallDefault, UnnoisedFirstCallClosure, UnnoisedFirstCallClassAttribute,
    UnnoisedFirstCallElsewhere,
]


@pytest.mark.parametrize("cls", COORDINATED, ids=[c.__name__ for c in COORDINATED])
def test_a_release_told_apart_as_the_first_call_of_its_step_is_a_violation_at_every_probe(cls):
    result = preflight(plugin_factory(cls, RUN), RUN, seed=0, steps=4, draws=8, name=cls.__name__)
    assert result.report.verdict == "VIOLATION", result.report.summary()
    assert all(not p.passed for p in result.report.probes), result.report.summary()


class SharedStepCounter(Honest):
    """Honest: counts its releases in a class attribute and a mutable default, and noises by a schedule read
    from that count (more noise early): each probe call starts where the release started."""

    releases: list = []

    def count(self, seen={"n": 0}):
        seen["n"] += 1
        type(self).releases.append(seen["n"])
        return seen["n"]

    def clip_and_noise(self, grads, step, epoch):
        factor = 1.0 + 1.0 / self.count()
        return [(s + factor * self.noise(s.shape)) / self.expected_batch_size for s in self.clipped_sum(grads)]


@pytest.mark.parametrize("seed", range(2))
def test_an_honest_plugin_with_shared_state_stays_verified_and_its_state_advances_once_per_release(seed):
    SharedStepCounter.releases.clear()
    SharedStepCounter.count.__defaults__[0]["n"] = 0
    steps = 5
    result = preflight(plugin_factory(SharedStepCounter, RUN), RUN, seed=seed, steps=steps, draws=8)
    assert result.report.verdict == "VERIFIED", result.report.summary()
    assert SharedStepCounter.count.__defaults__[0]["n"] == steps  # one count per release, none from the probes
    assert SharedStepCounter.releases == list(range(1, steps + 1))
