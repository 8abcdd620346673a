"""Calibrating sampling to marginals: raking, bit offsets, weighted quantiles, interpolation."""

import numpy as np
import pytest
import torch

from dpbench.telemetry.raking import bit_offset, interpolate, rake_softmax, weighted_quantiles


def test_raked_softmax_has_the_target_mean_and_keeps_the_ranking_within_a_class():
    torch.manual_seed(0)
    logits = torch.randn(5000, 6, dtype=torch.float64) * 2
    weights = torch.rand(5000, dtype=torch.float64)
    target = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05, 0.0], dtype=torch.float64)
    offsets = rake_softmax(logits, weights, target)
    probabilities = torch.softmax(logits + offsets, dim=1)
    mean = (weights / weights.sum()) @ probabilities
    assert torch.allclose(mean, target, atol=1e-6)
    # one offset per class: every row's log-odds between two classes move by the same amount
    shift = (probabilities[:, 0] / probabilities[:, 1]).log() - (logits[:, 0] - logits[:, 1])
    assert torch.allclose(shift, shift[0].expand_as(shift), atol=1e-8)


def test_bit_offset_hits_the_weighted_rate():
    torch.manual_seed(1)
    logits = torch.randn(4000, dtype=torch.float64)
    weights = torch.rand(4000, dtype=torch.float64)
    for rate in (0.0006, 0.2, 0.97):
        offset = bit_offset(logits, weights, rate)
        assert float((weights * torch.sigmoid(logits + offset)).sum() / weights.sum()) == pytest.approx(rate, rel=1e-6)


def test_weighted_quantiles_are_numpys_for_equal_weights_and_follow_the_weights():
    values = torch.tensor([3.0, 1.0, 2.0, 10.0], dtype=torch.float64)
    probabilities = torch.linspace(0, 1, 9, dtype=torch.float64)
    equal = weighted_quantiles(values, torch.ones(4, dtype=torch.float64), probabilities)
    sorted_values = np.sort(values.numpy())
    expected = np.interp(probabilities.numpy(), (np.arange(4) + 0.5) / 4, sorted_values)
    assert np.allclose(equal.numpy(), expected)
    heavy = weighted_quantiles(values, torch.tensor([1.0, 1.0, 1.0, 97.0], dtype=torch.float64),
                               torch.tensor([0.5], dtype=torch.float64))
    assert float(heavy) > 9.5 and float(equal[4]) == pytest.approx(2.5)


def test_interpolation_is_numpys_including_beyond_the_ends():
    xp = torch.tensor([0.0, 1.0, 1.0, 3.0])
    fp = torch.tensor([0.0, 10.0, 10.0, 30.0])
    x = torch.tensor([-1.0, 0.5, 1.0, 2.0, 5.0])
    expected = np.interp(x.numpy(), xp.numpy(), fp.numpy())
    assert torch.allclose(interpolate(x, xp, fp), torch.from_numpy(expected).float())
