"""The validation split and the noised score a private search selects by: disjoint from training,
sensitivity 1 (one example moves the count by at most 1) and the recorded noise."""

import math

import torch
from scipy import stats
from torch import nn

from dpbench.data import DatasetSplits
from dpbench.training.validation import carve_validation, correct_predictions, released_score


def toy_data(n: int = 200) -> DatasetSplits:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(n, 4, generator=generator)
    labels = (features[:, 0] > 0).to(torch.int64)
    return DatasetSplits("toy", features, labels, features[:20].clone(), labels[:20].clone(), 2)


def test_validation_examples_leave_the_training_set():
    data = toy_data()
    train, split = carve_validation(data, 0.1, 5.0, seed=3)
    assert split.size == 20 and train.train_size == 180
    rows = {tuple(r.tolist()) for r in train.train_features}
    assert not any(tuple(r.tolist()) in rows for r in split.features)
    assert split.release.record().sensitivity == 1.0 and split.release.noise_multiplier == 5.0


def test_one_example_moves_the_count_by_at_most_one():
    model = nn.Linear(4, 2)
    data = toy_data()
    _, split = carve_validation(data, 0.2, 5.0, seed=1)
    count = correct_predictions(model, split.features, split.labels).sum()
    extra = correct_predictions(model, split.features[:1], split.labels[:1]).sum()
    assert 0.0 <= float(extra) <= 1.0
    assert float(count) == float(correct_predictions(model, split.features[1:], split.labels[1:]).sum()) + float(
        correct_predictions(model, split.features[:1], split.labels[:1]).sum()
    )


def test_the_score_noise_is_the_recorded_one():
    model = nn.Linear(4, 2)
    _, split = carve_validation(toy_data(), 0.2, 7.0, seed=1)
    exact = float(correct_predictions(model, split.features, split.labels).sum()) / split.size
    generator = torch.Generator().manual_seed(5)
    errors = torch.tensor([released_score(model, split, generator) - exact for _ in range(2000)]) * split.size
    std = split.release.noise_std
    chi2 = stats.chi2(len(errors))
    assert chi2.ppf(1e-4) < float((errors / std).pow(2).sum()) < chi2.ppf(1 - 1e-4)
    assert abs(float(errors.mean())) < 4 * std / math.sqrt(len(errors))
