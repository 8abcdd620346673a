"""Momentum on noised gradients: the update rules, and a buffer that survives a checkpoint."""

import pickle
from functools import partial

import pytest
import torch

from mechanisms.composed import Composed
from mechanisms.fixed import FixedClipping
from mechanisms.momentum import NoisyMomentum

SHAPES = [torch.Size([3, 2]), torch.Size([2])]


@pytest.mark.parametrize("kind, weight", [("heavy_ball", 1.0), ("ema", 0.25)])
def test_buffer_follows_the_update_rule(kind, weight):
    mechanism = NoisyMomentum(1.0, beta=0.75, kind=kind)
    gradients = [[torch.randn(s) for s in SHAPES] for _ in range(3)]
    expected = [torch.zeros(s) for s in SHAPES]
    for step, gradient in enumerate(gradients):
        expected = [0.75 * e + weight * g for e, g in zip(expected, gradient)]
        out = mechanism.postprocess(gradient, step, 0)
        for o, e in zip(out, expected):
            torch.testing.assert_close(o, e)
        out[0].add_(100.0)  # the caller owning the output must not corrupt the buffer
    torch.testing.assert_close(mechanism.velocity[0], expected[0])


@pytest.mark.parametrize(
    "factory",
    [
        lambda: NoisyMomentum(0.5),
        lambda: Composed(0.5, FixedClipping, postprocessing=partial(NoisyMomentum, kind="heavy_ball")),
    ],
    ids=["momentum", "fixed_momentum"],
)
def test_buffer_is_carried_by_the_pickled_attributes_a_checkpoint_holds(factory):
    gradients = [[torch.randn(s) for s in SHAPES] for _ in range(4)]
    straight = factory()
    outputs = [straight.postprocess(g, step, 0) for step, g in enumerate(gradients)]

    interrupted = factory()
    for step in range(2):
        interrupted.postprocess(gradients[step], step, 0)
    resumed = factory()
    vars(resumed).update(pickle.loads(pickle.dumps(dict(vars(interrupted)))))  # what checkpoint.py does
    for step in range(2, 4):
        for a, b in zip(resumed.postprocess(gradients[step], step, 0), outputs[step]):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "options, message", [({"beta": 1.0}, "beta must be in"), ({"kind": "nesterov"}, "kind 'nesterov'")]
)
def test_invalid_momentum_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        NoisyMomentum(1.0, **options)
