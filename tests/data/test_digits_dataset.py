"""The scikit-learn digits dataset: offline, fixed stratified 80/20 split, normalized."""

import pytest
import torch
from sklearn.datasets import load_digits

from dpbench.data import DatasetSplits, load_dataset
from dpbench.data.digits import MEAN, STD


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits", root="/nonexistent/root/is/not/needed")


def test_sizes_shapes_and_dtypes(digits: DatasetSplits) -> None:
    assert (digits.train_size, len(digits.test_labels)) == (1437, 360)
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    assert digits.train_features.dtype == torch.float32
    assert digits.train_labels.dtype == torch.int64


def test_split_is_deterministic(digits: DatasetSplits) -> None:
    again = load_dataset("digits")
    assert torch.equal(digits.train_features, again.train_features)
    assert torch.equal(digits.test_labels, again.test_labels)


def test_split_is_a_stratified_partition_of_all_images(digits: DatasetSplits) -> None:
    bunch = load_digits()
    class_counts = torch.bincount(torch.as_tensor(bunch.target))
    test_counts = torch.bincount(digits.test_labels, minlength=10)
    assert torch.equal(torch.bincount(digits.train_labels, minlength=10) + test_counts, class_counts)
    assert (test_counts - 0.2 * class_counts).abs().max() <= 1
    pixels = torch.cat([digits.train_features, digits.test_features]) * STD[0] + MEAN[0]
    expected = torch.as_tensor(bunch.images, dtype=torch.float32) / 16
    assert torch.allclose(pixels.sum(0).squeeze(0), expected.sum(0), atol=1e-2)


def test_features_are_normalized(digits: DatasetSplits) -> None:
    pixels = digits.train_features * STD[0] + MEAN[0]
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert abs(digits.train_features.mean().item()) < 0.05
    assert abs(digits.train_features.std().item() - 1) < 0.05
