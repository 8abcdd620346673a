"""Attacks on the mechanism-kernel boundary: a structured mechanism's raw-data hooks try every route to
keep un-noised per-example norms for a later hook (or a later step), and the kernel refuses each one.

The two attacks that motivated the boundary are reproduced end to end first: without isolation, the
first releases the batch's largest raw norm exactly, the second makes the next step's recorded
sensitivity (and so its noise scale) a raw statistic of this batch."""

import math

import pytest
import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.isolation import IsolationError
from dpbench.privacy.mechanism import Mechanism, MechanismContractError
from dpbench.privacy.privatizer import StructuredPrivatizer
from mechanisms.adaptive import AdaptiveClipping
from mechanisms.normalized import AutomaticClipping

SHAPES = [torch.Size([3, 2]), torch.Size([2])]


def batch(seed: int = 0, size: int = 6) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn((size, *s), generator=generator) for s in SHAPES]


def run_steps(mechanism: Mechanism, steps: int = 2) -> list:
    privatizer = StructuredPrivatizer(mechanism, SHAPES, 10.0, 6.0, 0.1, generator=torch.Generator().manual_seed(1))
    return [privatizer.release([MaterializedGradients(batch(step))], step, 0) for step in range(steps)]


class NormInGradient(Mechanism):
    """Keeps the largest raw norm and writes it into the released gradient."""

    name = "norm_in_gradient"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        self.largest = float(group_norms.max())
        return super().clip_factors(group_norms, thresholds, step, epoch)

    def postprocess(self, gradient, step, epoch):
        gradient[1][0] = self.largest
        return gradient


class RawMedianThreshold(Mechanism):
    """Sets the next step's threshold to this batch's raw median norm."""

    name = "raw_median_threshold"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.threshold = max_grad_norm

    def thresholds(self, step, epoch):
        return [self.threshold]

    def clip_factors(self, group_norms, thresholds, step, epoch):
        self.threshold = float(group_norms.median())
        return super().clip_factors(group_norms, thresholds, step, epoch)


def test_a_norm_kept_for_postprocess_is_refused():
    with pytest.raises(IsolationError, match=r"clip_factors .* changed self.largest"):
        run_steps(NormInGradient(1.0))


def test_a_threshold_set_from_raw_norms_is_refused():
    with pytest.raises(IsolationError, match=r"self.threshold"):
        run_steps(RawMedianThreshold(1.0))


# ---------------------------------------------------------------------------------------------- routes
STASH: dict = {}
GLOBAL_LIST: list = []


class ClassStash(Mechanism):
    name = "class_stash"
    seen = 0.0

    def clip_factors(self, group_norms, thresholds, step, epoch):
        ClassStash.seen = float(group_norms.sum())
        return super().clip_factors(group_norms, thresholds, step, epoch)


class NestedContainer(Mechanism):
    name = "nested"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.history = {"norms": [[0.0]]}

    def clip_factors(self, group_norms, thresholds, step, epoch):
        self.history["norms"][0].append(float(group_norms[0, 0]))
        return super().clip_factors(group_norms, thresholds, step, epoch)


class InPlaceTensor(Mechanism):
    name = "in_place"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.buffer = torch.zeros(6)

    def clip_factors(self, group_norms, thresholds, step, epoch):
        self.buffer[: group_norms.shape[0]].copy_(group_norms[:, 0])
        return super().clip_factors(group_norms, thresholds, step, epoch)


def make_closure_mechanism() -> Mechanism:
    cell: list = []

    def remember(value: float) -> None:
        cell.append(value)

    class ClosureStash(Mechanism):
        name = "closure"

        def __init__(self, max_grad_norm):
            super().__init__(max_grad_norm)
            self.remember = remember

        def clip_factors(self, group_norms, thresholds, step, epoch):
            self.remember(float(group_norms.max()))
            return super().clip_factors(group_norms, thresholds, step, epoch)

    return ClosureStash(1.0)


class GlobalDict(Mechanism):
    name = "global_dict"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        STASH["max"] = float(group_norms.max())
        return super().clip_factors(group_norms, thresholds, step, epoch)


class GlobalList(Mechanism):
    name = "global_list"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        GLOBAL_LIST.append(group_norms.clone())
        return super().clip_factors(group_norms, thresholds, step, epoch)


class OwnGenerator(Mechanism):
    """Encodes a norm into the state of a generator it owns (reads it back later)."""

    name = "own_generator"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.generator = torch.Generator().manual_seed(0)

    def clip_factors(self, group_norms, thresholds, step, epoch):
        self.generator.manual_seed(int(group_norms.max() * 1e6))
        return super().clip_factors(group_norms, thresholds, step, epoch)


class GlobalRandomState(Mechanism):
    name = "global_random_state"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        torch.manual_seed(int(group_norms.max() * 1e6))
        return super().clip_factors(group_norms, thresholds, step, epoch)


class StatisticStash(AdaptiveClipping):
    """An adaptive mechanism whose clip_statistic keeps the raw norms."""

    name = "statistic_stash"

    def clip_statistic(self, group_norms, thresholds, step, epoch):
        self.raw = group_norms.clone()
        return super().clip_statistic(group_norms, thresholds, step, epoch)


ROUTES = {
    "attribute": (lambda: NormInGradient(1.0), r"self\.largest"),
    "nested container": (lambda: NestedContainer(1.0), r"self\.history\['norms'\]\[0\]"),
    "tensor mutated in place": (lambda: InPlaceTensor(1.0), r"self\.buffer"),
    "closure": (make_closure_mechanism, r"closure variable cell"),
    "class attribute": (lambda: ClassStash(1.0), r"class attribute ClassStash\.seen"),
    "global dict": (lambda: GlobalDict(1.0), r"global STASH"),
    "global list": (lambda: GlobalList(1.0), r"global GLOBAL_LIST"),
    "own generator": (lambda: OwnGenerator(1.0), r"self\.generator"),
    "global random state": (lambda: GlobalRandomState(1.0), r"torch's global random state"),
    "statistic hook": (lambda: StatisticStash(1.0, count_noise=20.0), r"clip_statistic .*self\.raw"),
}


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_out_of_a_raw_data_hook_is_refused(route):
    build, where = ROUTES[route]
    with pytest.raises(IsolationError, match=where):
        run_steps(build())


class ShrinksTheNorms(Mechanism):
    """Scales the norms it is handed in place, which would inflate a bound computed from them afterwards."""

    name = "shrinks_norms"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        group_norms.mul_(1e-6)
        thresholds.mul_(1e6)
        return torch.full_like(group_norms, 1e3)


def test_the_bound_is_computed_from_the_kernels_own_norms():
    grads = [10.0 * g for g in batch()]
    privatizer = StructuredPrivatizer(ShrinksTheNorms(1.0), SHAPES, 1e-12, 1.0, 0.1)
    for index in range(6):
        one = [g[index : index + 1] for g in grads]
        released = privatizer.release([MaterializedGradients(one)], 0, 0).gradient
        assert math.sqrt(sum(float(r.double().pow(2).sum()) for r in released)) <= 1.0


class TensorSpy(torch.Tensor):
    """A tensor subclass that would see every kernel operation done with it."""


class ReturnsASubclass(Mechanism):
    name = "returns_subclass"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        return super().clip_factors(group_norms, thresholds, step, epoch).as_subclass(TensorSpy)


def test_a_tensor_subclass_cannot_be_returned_to_the_kernel():
    with pytest.raises(MechanismContractError, match="plain torch.Tensor"):
        run_steps(ReturnsASubclass(1.0))


@pytest.mark.parametrize("mechanism", [AdaptiveClipping(1.0, count_noise=20.0), AutomaticClipping(1.0)])
def test_honest_mechanisms_that_override_raw_data_hooks_run(mechanism):
    releases = run_steps(mechanism, steps=3)
    assert len(releases) == 3 and all(torch.isfinite(g).all() for r in releases for g in r.gradient)


def test_state_may_change_from_released_values():
    """The adaptive threshold moves from the noised count (observe_statistic): allowed."""
    mechanism = AdaptiveClipping(1.0, count_noise=20.0)
    run_steps(mechanism, steps=3)
    assert mechanism.clip_norm != 1.0


class NoiseFollowsReleases(Mechanism):
    """Lowers the noise once a released gradient is large: an adaptively chosen noise level."""

    name = "noise_follows_releases"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.level = 1.0

    def noise_shape(self, step, epoch):
        return self.level

    def postprocess(self, gradient, step, epoch):
        self.level = 0.5 if float(gradient[0].norm()) > 0 else 1.0
        return gradient


def test_a_noise_schedule_that_moves_after_calibration_is_refused():
    privatizer = StructuredPrivatizer(NoiseFollowsReleases(1.0), SHAPES, 10.0, 6.0, 0.1)
    privatizer.check_schedule([(0, 0), (1, 0)])
    privatizer.release([MaterializedGradients(batch(0))], 0, 0)
    with pytest.raises(MechanismContractError, match="noise_shape returned 0.5, but 1 when the noise was calibrated"):
        privatizer.release([MaterializedGradients(batch(1))], 1, 0)


@pytest.mark.parametrize("shape", [0.0, -1.0, math.nan, math.inf, None])
def test_a_noise_shape_that_is_not_a_positive_number_is_refused(shape):
    class BadShape(Mechanism):
        name = "bad_shape"

        def noise_shape(self, step, epoch):
            return shape

    with pytest.raises(MechanismContractError, match="noise_shape returned"):
        StructuredPrivatizer(BadShape(1.0), SHAPES, 1.0, 6.0, 0.1)
