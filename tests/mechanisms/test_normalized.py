"""Automatic clipping: every contribution normalised below norm 1, whatever max_grad_norm says."""

import pytest
import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.privatizer import StructuredPrivatizer
from mechanisms.normalized import AutomaticClipping


def test_each_example_is_scaled_by_one_over_norm_plus_gamma():
    grads = [torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])]
    kernel = StructuredPrivatizer(AutomaticClipping(stability=0.5), [torch.Size([2])], 1e-9, 1.0, 0.1)
    release = kernel.release([MaterializedGradients(grads)], 0, 0)
    expected = torch.tensor([3.0, 4.0]) / 5.5 + torch.tensor([0.3, 0.4]) / 1.0
    torch.testing.assert_close(release.gradient[0], expected)
    assert release.record.sensitivity == 1.0


@pytest.mark.parametrize("max_grad_norm", [None, 0.01, 1.0, 50.0])
def test_max_grad_norm_plays_no_part(max_grad_norm):
    mechanism = AutomaticClipping(max_grad_norm)
    assert mechanism.max_grad_norm == 1.0 and mechanism.thresholds(0, 0) == [1.0]


def test_non_positive_stability_is_refused():
    with pytest.raises(ValueError, match="stability gamma > 0"):
        AutomaticClipping(1.0, stability=0.0)
