"""Automatic clipping: every contribution scaled to R g / (||g|| + gamma), sensitivity R."""

import pytest
import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.privatizer import StructuredPrivatizer
from mechanisms.normalized import AutomaticClipping


@pytest.mark.parametrize("radius", [1.0, 0.1])
def test_each_example_is_scaled_by_radius_over_norm_plus_gamma(radius):
    grads = [torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])]
    kernel = StructuredPrivatizer(AutomaticClipping(radius, stability=0.5), [torch.Size([2])], 1e-9, 1.0, 0.1)
    release = kernel.release([MaterializedGradients(grads)], 0, 0)
    expected = radius * (torch.tensor([3.0, 4.0]) / 5.5 + torch.tensor([0.3, 0.4]) / 1.0)
    torch.testing.assert_close(release.gradient[0], expected)
    assert release.record.sensitivity == radius


def test_a_huge_example_moves_the_sum_by_less_than_the_radius():
    base = [torch.zeros(1, 2)]
    with_huge = [torch.tensor([[0.0, 0.0], [3e6, 4e6]])]
    radius = 0.1
    outputs = []
    for grads in (base, with_huge):
        kernel = StructuredPrivatizer(AutomaticClipping(radius), [torch.Size([2])], 1.0, 1.0, 0.1, torch.Generator().manual_seed(0))
        outputs.append(kernel.release([MaterializedGradients(grads)], 0, 0).gradient[0])
    shift = float((outputs[1] - outputs[0]).norm())
    assert shift == pytest.approx(radius, rel=1e-5)  # saturates the bound R (float32: to rounding)


def test_non_positive_stability_is_refused():
    with pytest.raises(ValueError, match="stability gamma > 0"):
        AutomaticClipping(1.0, stability=0.0)
