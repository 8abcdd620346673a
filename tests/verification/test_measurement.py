"""The effective multiplier of a Gaussian release, measured, against the closed form."""

import math

import pytest
import torch

from dpbench.verification.measurement import combined_multiplier, measure_direction, noise_scale


def test_whitened_multiplier_of_anisotropic_noise_matches_the_mahalanobis_formula():
    generator = torch.Generator().manual_seed(0)
    stds, shapes = (1.0, 2.0), (torch.Size([400]), torch.Size([300]))
    draws = [[s * torch.randn(shape, generator=generator, dtype=torch.float64) for s, shape in zip(stds, shapes)] for _ in range(16)]
    scale, residuals = noise_scale(draws)
    assert scale.std == pytest.approx(stds, rel=0.05)
    shift = [torch.zeros(400, dtype=torch.float64), torch.zeros(300, dtype=torch.float64)]
    shift[0][0], shift[1][0] = 3.0, 4.0
    measured = measure_direction("x", shift, scale, residuals, alpha=1e-5)
    truth = 1.0 / math.sqrt((3.0 / 1.0) ** 2 + (4.0 / 2.0) ** 2)
    assert measured.whitened == pytest.approx(truth, rel=0.05)
    assert measured.whitened_upper >= truth
    assert measured.sigma == measured.whitened


def test_noise_confined_to_a_subspace_is_caught_by_the_directional_check():
    """Per-tensor scales look fine, but all noise lies along one fixed vector: orthogonal shifts are free."""
    generator = torch.Generator().manual_seed(1)
    direction = torch.zeros(100, dtype=torch.float64)
    direction[0] = 10.0
    draws = [[torch.randn(1, generator=generator, dtype=torch.float64) * direction] for _ in range(16)]
    scale, residuals = noise_scale(draws)
    shift = [torch.zeros(100, dtype=torch.float64)]
    shift[0][1] = 1.0
    measured = measure_direction("x", shift, scale, residuals, alpha=1e-5)
    assert measured.whitened > 0.5 and measured.sigma == 0.0 and measured.upper == 0.0


def test_zero_noise_in_a_moved_tensor_is_multiplier_zero_and_no_shift_is_infinite():
    draws = [[torch.randn(5, dtype=torch.float64), torch.ones(3, dtype=torch.float64)] for _ in range(4)]
    scale, residuals = noise_scale(draws)
    moved = [torch.zeros(5, dtype=torch.float64), torch.full((3,), 0.1, dtype=torch.float64)]
    assert measure_direction("x", moved, scale, residuals, 1e-5).sigma == 0.0
    still = [torch.zeros(5, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)]
    assert measure_direction("x", still, scale, residuals, 1e-5).sigma == math.inf


def test_combined_multiplier_composes_gaussian_channels():
    assert combined_multiplier([1.0, 1.0]) == pytest.approx(1 / math.sqrt(2))
    assert combined_multiplier([1.0, math.inf]) == 1.0
    assert combined_multiplier([1.0, 0.0]) == 0.0
