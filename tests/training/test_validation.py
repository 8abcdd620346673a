"""The validation split and the noised score a private search selects by: disjoint from training,
sensitivity 1 (one example moves the count by at most 1) and the recorded noise."""

import math

import pytest
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
    assert split.size + train.train_size == 200 and 5 <= split.size <= 40  # binomial(200, 0.1): 20 +- 4.2
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


def _rows(features: torch.Tensor) -> set[tuple]:
    return {tuple(r.tolist()) for r in features}


def test_one_added_example_moves_no_other_between_training_and_validation():
    """Neighbouring training sets give neighbouring splits: the added example lands on one side, every other
    example stays where it was (wherever the example is inserted). A split drawn as a permutation of the set's
    size moved almost every example (a seventh red team's neighbours shared 13 of 144 validation examples)."""
    data = toy_data(500)
    train, split = carve_validation(data, 0.1, 5.0, seed=0)
    extra = torch.full((1, 4), 9.0)
    for position in (0, 250, 500):
        features = torch.cat([data.train_features[:position], extra, data.train_features[position:]])
        labels = torch.cat([data.train_labels[:position], torch.ones(1, dtype=torch.int64), data.train_labels[position:]])
        neighbour = DatasetSplits("toy", features, labels, data.test_features, data.test_labels, 2)
        train_2, split_2 = carve_validation(neighbour, 0.1, 5.0, seed=0)
        moved = (_rows(split.features) ^ _rows(split_2.features)) | (_rows(train.train_features) ^ _rows(train_2.train_features))
        assert moved == {tuple(extra[0].tolist())}


def test_the_held_out_share_follows_the_fraction():
    from dpbench.privacy.example_split import held_out

    picks = held_out((f"device-{i}" for i in range(20_000)), 0.05, seed=7)
    assert abs(float(picks.double().mean()) - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 20_000)
    assert not torch.equal(picks, held_out((f"device-{i}" for i in range(20_000)), 0.05, seed=8))


class MixesWhenEvaluating(nn.Module):
    """Per-example in training mode; in eval mode it subtracts the batch mean, so one example moves the others'
    predictions (a batched count would have sensitivity up to the batch size)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            x = x - x.mean(dim=0, keepdim=True)
        return self.linear(x)


def test_the_count_reads_each_example_alone_even_from_a_model_that_mixes_them_in_eval_mode():
    torch.manual_seed(0)
    model = MixesWhenEvaluating()
    data = toy_data(300)
    features, labels = data.train_features, data.train_labels
    outlier = torch.full((1, 4), 1e4)
    count = correct_predictions(model, features, labels).sum()
    with_outlier = correct_predictions(model, torch.cat([features, outlier]), torch.cat([labels, labels[:1]]))
    assert abs(float(with_outlier.sum()) - float(count)) <= 1.0
    alone = torch.cat([model.eval()(features[i : i + 1]) for i in range(features.shape[0])]).argmax(1) == labels
    assert float(count) == float(alone.sum())


class RemembersWhatItScored(nn.Module):
    """Keeps the largest input it saw in eval mode: scoring the private validation split would write it into
    the model that is then reported."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.largest = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.largest = torch.maximum(self.largest, x.detach().abs().max())
        return self.linear(x)


def test_scoring_may_not_write_the_validation_data_into_the_model():
    from dpbench.engine.independence import ExampleMixingError

    _, split = carve_validation(toy_data(), 0.2, 5.0, seed=1)
    with pytest.raises(ExampleMixingError, match="scoring the private validation split .*largest"):
        released_score(RemembersWhatItScored(), split, torch.Generator().manual_seed(0))
