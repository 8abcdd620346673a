"""scikit-learn's bundled 8x8 handwritten digits: a tiny dataset that needs no download."""

from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from dpbench.data.registry import register_dataset
from dpbench.data.splits import DatasetSplits, normalize

TEST_FRACTION = 0.2
SPLIT_SEED = 0
MAX_PIXEL = 16.0
# Pixel statistics of all 1,797 bundled images after scaling to [0, 1]: a public constant, like MNIST's.
MEAN = (0.3053,)
STD = (0.3760,)


@register_dataset("digits")
def load_digits_dataset(root: Path, verify: bool, download: bool) -> DatasetSplits:
    """The 1,797 digits as [1, 8, 8] images, split 80/20 stratified by class with a fixed seed.

    The data ships with scikit-learn, so ``root``, ``verify`` and ``download`` are unused.
    """
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / MAX_PIXEL
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_index, test_index = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=TEST_FRACTION,
        stratify=bunch.target,
        random_state=SPLIT_SEED,
    )
    features = normalize(images, MEAN, STD)
    return DatasetSplits(
        name="digits",
        train_features=features[train_index],
        train_labels=labels[train_index],
        test_features=features[test_index],
        test_labels=labels[test_index],
        num_classes=10,
    )
