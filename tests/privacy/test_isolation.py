"""Attacks on the mechanism-kernel boundary: a structured mechanism's raw-data hooks try every route to
keep un-noised per-example norms for a later hook (or a later step), and the kernel refuses each one.

The two attacks that motivated the boundary are reproduced end to end first: without isolation, the
first releases the batch's largest raw norm exactly, the second makes the next step's recorded
sensitivity (and so its noise scale) a raw statistic of this batch."""

import array
import functools
import io
import itertools
import math
import random
import struct
import textwrap
import threading
import types
import weakref

import numpy as np
import pytest
import torch
from kernel_steps import SHAPES, batch, run_steps

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.isolation import IsolationError
from dpbench.privacy.mechanism import Mechanism, MechanismContractError
from dpbench.privacy.privatizer import StructuredPrivatizer
from mechanisms.adaptive import AdaptiveClipping
from mechanisms.normalized import AutomaticClipping


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
STRING_BUFFER = io.StringIO()
HIDDEN_STASH: list = []


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


class StringBufferStash(Mechanism):
    """Writes each norm into a module-level ``io.StringIO`` (a C object: its buffer is not an attribute); an
    eighth red team's released the exact sum of the raw norms from it in ``postprocess``, VERIFIED (kernel)."""

    name = "string_buffer"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        STRING_BUFFER.write(f"{float(group_norms.max())};")
        return super().clip_factors(group_norms, thresholds, step, epoch)


class ComputedGlobalName(Mechanism):
    """Reaches its stash by a name its code does not hold (the check walked only the names code holds)."""

    name = "computed_global"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        globals()["HIDDEN_" + "STASH"].append(float(group_norms.max()))
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


class Holder:
    """A plain object, hashable by identity: kept in sets and as dict keys."""

    value = 0.0


class ContentStash(Mechanism):
    """Writes the batch's largest raw norm into ``self.<attribute>`` with ``write(self, norm)``, where the
    fingerprint can only see it by the content of a buffer, an attribute of a tensor, the storage behind a
    view, a generator's state or an object held in a set or as a dict key."""

    name = "content_stash"

    def __init__(self, make, write):
        super().__init__(1.0)
        self.stash, self.write = make(), write

    def clip_factors(self, group_norms, thresholds, step, epoch):
        self.write(self.stash, float(group_norms.max()))
        return super().clip_factors(group_norms, thresholds, step, epoch)


def packed(norm: float) -> bytes:
    return struct.pack("d", norm)


def set_attribute(target: object, norm: float) -> None:
    target.value = norm


def draws(norm: float) -> int:
    """A data-dependent number of calls: what a counter or a generator's position can carry."""
    return 1 + int(norm * 10) % 7


def fill_outside_view(view: torch.Tensor, norm: float) -> None:
    view.as_strided((1,), (1,), 5).fill_(norm)  # storage element 5, beyond the view's two


def rewrite_unchanged(tensor: torch.Tensor, norm: float) -> None:
    for _ in range(draws(norm)):  # values unchanged; the version counter moves
        tensor.add_(0.0)


def set_grad(tensor: torch.Tensor, norm: float) -> None:
    tensor.grad = torch.full_like(tensor, norm)


def assign(target, norm):
    target[:] = packed(norm)


CONTENT_ROUTES = {
    "bytearray": (lambda: bytearray(8), assign),
    "array.array": (lambda: array.array("d", [0.0]), lambda a, norm: a.__setitem__(0, norm)),
    "memoryview": (lambda: memoryview(bytearray(8)), assign),
    "numpy object array": (lambda: np.array([Holder()], dtype=object), lambda a, norm: set_attribute(a[0], norm)),
    "numpy buffer beyond a view": (lambda: np.zeros(8)[:2], lambda a, norm: a.base.__setitem__(5, norm)),
    "tensor attribute": (lambda: torch.zeros(1), set_attribute),
    "tensor storage beyond a view": (lambda: torch.zeros(8)[:2], fill_outside_view),
    "tensor version counter": (lambda: torch.zeros(2), rewrite_unchanged),
    "tensor gradient": (lambda: torch.zeros(2), set_grad),
    "python generator": (lambda: random.Random(0), lambda g, norm: g.seed(norm)),
    "numpy generator": (lambda: np.random.default_rng(0), lambda g, norm: g.random(draws(norm))),
    "iterator": (lambda: itertools.count(), lambda c, norm: [next(c) for _ in range(draws(norm))]),
    "set element": (lambda: {Holder()}, lambda s, norm: set_attribute(next(iter(s)), norm)),
    "dict key": (lambda: {Holder(): 0.0}, lambda d, norm: set_attribute(next(iter(d)), norm)),
    "cache": (lambda: functools.lru_cache(maxsize=None)(abs), lambda cached, norm: cached(norm)),
}


@pytest.mark.parametrize("route", CONTENT_ROUTES)
def test_state_seen_only_by_its_content_is_compared_by_content(route):
    make, write = CONTENT_ROUTES[route]
    with pytest.raises(IsolationError, match=r"clip_factors .* changed self\.stash"):
        run_steps(ContentStash(make, write))


class Unreadable(Mechanism):
    """Holds a Python generator: its state (a suspended frame) is opaque to the fingerprint."""

    name = "unreadable"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.remembered = (norm for norm in iter(lambda: 0.0, None))

    def clip_factors(self, group_norms, thresholds, step, epoch):
        return super().clip_factors(group_norms, thresholds, step, epoch)


def test_state_the_fingerprint_cannot_read_is_refused_by_type():
    with pytest.raises(IsolationError, match=r"cannot read the state of self\.remembered \(builtins\.generator\)"):
        run_steps(Unreadable(1.0))


class ReadsEverything(Mechanism):
    """Honest: holds every kind of state the fingerprint compares by content and only reads it in the hook."""

    name = "reads_everything"

    def __init__(self, max_grad_norm):
        super().__init__(max_grad_norm)
        self.state = {
            "buffer": bytearray(packed(max_grad_norm)), "array": array.array("d", [max_grad_norm]),
            "ndarray": np.ones(3), "objects": np.array([Holder()], dtype=object), "tensor": torch.ones(2)[:1],
            "rng": random.Random(0), "numpy rng": np.random.default_rng(0), "holders": {Holder()}, "dtype": torch.float64,
            "lock": threading.Lock(), "reference": weakref.ref(Holder), "counter": itertools.count(),
        }

    def clip_factors(self, group_norms, thresholds, step, epoch):
        scale = struct.unpack("d", bytes(self.state["buffer"]))[0] * float(self.state["tensor"][0])
        assert isinstance(self.state["rng"], random.Random) and np.all(self.state["ndarray"] == 1.0)
        return super().clip_factors(group_norms, thresholds * scale, step, epoch)


REBUILT_LIBRARY_FUNCTION = types.FunctionType(textwrap.indent.__code__, vars(textwrap), "indent", ({},))
"""A standard-library function's code and globals with defaults of the mechanism's own: its defaults are the
mechanism's state (only the function a library module holds under its name is left to the library)."""


class RebuiltLibraryFunctionStash(Mechanism):
    name = "rebuilt_library_function_stash"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        REBUILT_LIBRARY_FUNCTION.__defaults__[0]["largest"] = float(group_norms.max())
        return super().clip_factors(group_norms, thresholds, step, epoch)


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
    "string buffer": (lambda: StringBufferStash(1.0), r"global STRING_BUFFER"),
    "computed global name": (lambda: ComputedGlobalName(1.0), r"global HIDDEN_STASH"),
    "a library function rebuilt with its own defaults": (
        lambda: RebuiltLibraryFunctionStash(1.0), r"global REBUILT_LIBRARY_FUNCTION of module test_isolation defaults"
    ),
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


class ReturnsASubclassAfterControlFlow(Mechanism):
    """The same, after Python control flow on the values."""

    name = "returns_subclass_after_control_flow"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        factors = super().clip_factors(group_norms, thresholds, step, epoch)
        return factors.as_subclass(TensorSpy) if float(group_norms.sum()) >= 0 else factors


@pytest.mark.parametrize("mechanism", [ReturnsASubclass(1.0), ReturnsASubclassAfterControlFlow(1.0)])
def test_a_tensor_subclass_never_reaches_the_kernel(mechanism):
    with pytest.raises(MechanismContractError, match="plain torch.Tensor"):
        run_steps(mechanism)


@pytest.mark.parametrize("mechanism", [AdaptiveClipping(1.0, count_noise=20.0), AutomaticClipping(1.0), ReadsEverything(1.0)])
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
