"""Per-layer clipping: groups, and thresholds whose squares sum to max_grad_norm^2 for both splits."""

import math

import pytest
import torch

from dpbench.models.digits_cnn import DigitsTanhCNN
from mechanisms.perlayer import PerLayerClipping

DIGITS_SHAPES = [p.shape for p in DigitsTanhCNN().parameters()]  # conv w, b, conv w, b, linear w, b


def test_tensor_groups_and_equal_split():
    mechanism = PerLayerClipping(0.6)
    assert mechanism.parameter_groups(DIGITS_SHAPES) == [[i] for i in range(6)]
    assert mechanism.thresholds(0, 0) == pytest.approx([0.6 / math.sqrt(6)] * 6)


def test_layer_groups_pair_each_bias_with_its_weight():
    mechanism = PerLayerClipping(0.6, groups="layer")
    assert mechanism.parameter_groups(DIGITS_SHAPES) == [[0, 1], [2, 3], [4, 5]]
    assert mechanism.thresholds(0, 0) == pytest.approx([0.6 / math.sqrt(3)] * 3)


def test_a_lone_vector_is_not_paired_with_a_mismatched_weight():
    shapes = [torch.Size([5, 3]), torch.Size([4]), torch.Size([4])]
    assert PerLayerClipping(1.0, groups="layer").parameter_groups(shapes) == [[0], [1, 2]]


def test_proportional_split_follows_the_square_root_of_the_group_size():
    mechanism = PerLayerClipping(2.0, split="proportional", groups="layer")
    groups = mechanism.parameter_groups(DIGITS_SHAPES)
    sizes = [sum(DIGITS_SHAPES[i].numel() for i in group) for group in groups]
    expected = [2.0 * math.sqrt(n / sum(sizes)) for n in sizes]
    assert mechanism.thresholds(0, 0) == pytest.approx(expected)
    assert math.sqrt(sum(c * c for c in mechanism.thresholds(0, 0))) == pytest.approx(2.0)


def test_thresholds_before_groups_and_unknown_options_are_refused():
    with pytest.raises(RuntimeError, match="parameter_groups first"):
        PerLayerClipping(1.0).thresholds(0, 0)
    with pytest.raises(ValueError, match="split 'bogus' is unknown"):
        PerLayerClipping(1.0, split="bogus")
    with pytest.raises(ValueError, match="groups 'module' is unknown"):
        PerLayerClipping(1.0, groups="module")
