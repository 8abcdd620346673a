"""Every built-in's released gradient, measured through the real kernel, against what the ledger
records; and a hand-written near miss of each, which the same measurement flags.

Measured on a fake model with common random numbers (see ``measure.py``): (a) the shift one
huge-norm example causes, compared with the recorded sensitivity, with the huge norm in every group
at once and in one group; (b) the per-coordinate noise over 200 draws, compared with z S; (c) the
effective multiplier (shift whitened by the noise, over the example's step and the steps after it),
compared with the recorded z. Expected values are computed here from the definitions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache, partial

import broken_plugins as broken
import pytest
from measure import (
    EPOCHS,
    FLAG_RATIO,
    STEPS_PER_EPOCH,
    Launch,
    Measurement,
    Schedule,
    huge_example,
    kernel,
    measure,
    noise_covariances,
    plugin,
)

from mechanisms.composed import Composed
from mechanisms.fixed import FixedClipping
from mechanisms.momentum import NoisyMomentum
from mechanisms.noise_decay import NoiseDecay
from mechanisms.normalized import AutomaticClipping
from mechanisms.perlayer import PerLayerClipping

C, Z, BETA = 0.7, 1.3, 0.9
EVERY_TENSOR = (0, 1, 2, 3)
ONE_STEP: tuple[Schedule, ...] = (((0, 0),),)
EACH_EPOCH: tuple[Schedule, ...] = tuple(((e * STEPS_PER_EPOCH, e),) for e in range(EPOCHS))
THREE_STEPS: tuple[Schedule, ...] = (((0, 0), (1, 0), (2, 0)),)
LAYER_SIZES = (16 * 8 + 16, 4 * 16 + 4)  # weight + bias of each layer of the fake model
TENSOR_LAYER = (0, 0, 1, 1)


@dataclass(frozen=True)
class Case:
    launch: Launch
    schedules: tuple[Schedule, ...]
    sensitivity: float  # what the step's sensitivity must be, from the mechanism's definition
    one_group_shift: dict[int, float] = field(default_factory=dict)  # huge norm in tensor i only: expected shift
    gain: float = 1.0  # post-processing's scale on the example's own release (EMA: 1 - beta)


def flat(sensitivity: float) -> dict[int, float]:
    return {i: sensitivity for i in EVERY_TENSOR}


BUILTINS = {
    "fixed": Case(kernel(lambda: FixedClipping(C), Z), ONE_STEP, C, flat(C)),
    "perlayer": Case(kernel(lambda: PerLayerClipping(C), Z), ONE_STEP, C, {i: C / 2 for i in EVERY_TENSOR}),
    "perlayer_proportional_by_layer": Case(
        kernel(lambda: PerLayerClipping(C, split="proportional", groups="layer"), Z),
        ONE_STEP,
        C,
        {i: C * math.sqrt(LAYER_SIZES[TENSOR_LAYER[i]] / sum(LAYER_SIZES)) for i in EVERY_TENSOR},
    ),
    **{
        f"noise_decay_{schedule}": Case(
            kernel(lambda schedule=schedule: NoiseDecay(C, epochs=EPOCHS, schedule=schedule, every=2), Z), EACH_EPOCH, C
        )
        for schedule in ("step", "exponential", "linear", "cosine")
    },
    "momentum_heavy_ball": Case(kernel(lambda: NoisyMomentum(C, BETA, "heavy_ball"), Z), THREE_STEPS, C),
    "momentum_ema": Case(kernel(lambda: NoisyMomentum(C, BETA, "ema"), Z), THREE_STEPS, C, gain=1 - BETA),
    "normalized": Case(kernel(lambda: AutomaticClipping(C), Z), ONE_STEP, C, flat(C)),
    "perlayer_decay": Case(
        kernel(lambda: Composed(C, PerLayerClipping, partial(NoiseDecay, epochs=EPOCHS)), Z),
        EACH_EPOCH,
        C,
        {i: C / 2 for i in EVERY_TENSOR},
    ),
    "fixed_momentum": Case(
        kernel(lambda: Composed(C, FixedClipping, postprocessing=partial(NoisyMomentum, kind="heavy_ball")), Z),
        THREE_STEPS,
        C,
    ),
}

# Each hand-written near miss, the built-in it imitates, and the sequences to probe.
BROKEN = {
    "per-layer noise at each layer's own threshold": (broken.PerLayerOwnNoise, "perlayer"),
    "per-layer sensitivity claim without sqrt(L)": (broken.PerLayerUnscaled, "perlayer"),
    "decay reporting the schedule's mean sigma": (broken.MeanSigmaDecay, "noise_decay_exponential"),
    "momentum on raw clipped gradients": (broken.RawMomentum, "fixed_momentum"),
    "normalized to norm 1, noise sized to max_grad_norm": (broken.NormalizedNoiseAtClipNorm, "normalized"),
    "per-layer decay, noise at each layer's own threshold": (broken.PerLayerDecayOwnNoise, "perlayer_decay"),
}


@cache
def covariances(name: str, index: int):
    case = BUILTINS[name] if name in BUILTINS else broken_case(name)
    return noise_covariances(case.launch, case.schedules[index])


def broken_case(name: str) -> Case:
    plugin_class, twin = BROKEN[name]
    return Case(plugin(plugin_class, Z, C), BUILTINS[twin].schedules, C)


def measured(name: str, tensors=EVERY_TENSOR) -> list[Measurement]:
    """One measurement per probed sequence of the case, the huge example in ``tensors``."""
    case = BUILTINS[name] if name in BUILTINS else broken_case(name)
    return [
        measure(case.launch, huge_example(tensors), schedule, covariances(name, index))
        for index, schedule in enumerate(case.schedules)
    ]


@pytest.mark.parametrize("name", BUILTINS)
def test_a_huge_example_moves_the_release_by_the_recorded_sensitivity(name):
    case = BUILTINS[name]
    for m in measured(name):
        assert m.recorded_sensitivity == pytest.approx(case.sensitivity, rel=1e-9)
        assert m.shift / case.gain == pytest.approx(case.sensitivity, rel=1e-4)


@pytest.mark.parametrize("name, tensor", [(name, i) for name, case in BUILTINS.items() for i in case.one_group_shift])
def test_a_huge_example_in_one_group_moves_the_release_by_that_groups_threshold(name, tensor):
    case = BUILTINS[name]
    for m in measured(name, tensors=(tensor,)):
        assert m.shift / case.gain == pytest.approx(case.one_group_shift[tensor], rel=1e-4)
        assert m.shift <= m.recorded_sensitivity * (1 + 1e-6)


@pytest.mark.parametrize("name", BUILTINS)
def test_noise_is_the_recorded_multiplier_times_sensitivity_in_every_tensor(name):
    case = BUILTINS[name]
    for m in measured(name):
        for std in m.noise_std:
            assert std / case.gain == pytest.approx(m.recorded_multiplier * m.recorded_sensitivity, rel=0.08)


@pytest.mark.parametrize("name", BUILTINS)
def test_effective_multiplier_is_the_recorded_one(name):
    for m in measured(name):
        assert m.ratio == pytest.approx(1.0, abs=0.05)
        assert not m.flagged


@pytest.mark.parametrize("name", BROKEN)
def test_the_same_measurement_flags_the_broken_near_miss(name):
    _, twin = BROKEN[name]
    assert any(m.flagged for m in measured(name)), f"{name}: not flagged"
    assert not any(m.flagged for m in measured(twin)), f"{twin}: a correct built-in was flagged"


def test_per_layer_flaws_show_only_with_a_huge_norm_in_every_group_at_once():
    for name in ("per-layer noise at each layer's own threshold", "per-layer sensitivity claim without sqrt(L)"):
        assert measured(name, tensors=EVERY_TENSOR)[0].flagged
        assert not measured(name, tensors=(0,))[0].flagged
    own_noise = measured("per-layer noise at each layer's own threshold")[0]
    assert own_noise.ratio == pytest.approx(1 / math.sqrt(4), rel=0.05)  # z / sqrt(L)
    unscaled = measured("per-layer sensitivity claim without sqrt(L)")[0]
    assert unscaled.shift == pytest.approx(C * math.sqrt(4), rel=1e-4)


def test_decay_reporting_its_mean_reads_fine_early_and_wrong_late():
    ratios = [m.ratio for m in measured("decay reporting the schedule's mean sigma")]
    shapes = [broken.END_RATIO ** (e / (EPOCHS - 1)) for e in range(EPOCHS)]
    expected = [s / (sum(shapes) / EPOCHS) for s in shapes]
    assert ratios == pytest.approx(expected, rel=0.05)
    assert ratios[0] > 1 > FLAG_RATIO > ratios[-1]


def test_momentum_on_raw_gradients_is_caught_by_the_later_steps_not_the_first():
    raw = measured("momentum on raw clipped gradients")[0]
    assert raw.shift == pytest.approx(C, rel=1e-4)  # the example's own step looks right
    assert raw.noise_std[0] == pytest.approx(Z * C, rel=0.08)
    assert raw.ratio == pytest.approx(1 / math.sqrt(1 + BETA**2 + BETA**4), rel=0.05)  # re-released twice
