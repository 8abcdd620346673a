"""A validation split carved from the private training set, and the private score a search selects by.

A private search must not choose among trials by test accuracy (the test set is for the final report
only) and must pay for choosing by anything computed from the training data. The validation examples
are a share of the training set, each chosen by a hash of its own bytes (so one added example moves no other
between the two sides), left out of the trial's training; after training, the
trial releases the number of validation examples it classifies correctly plus Gaussian noise. Each
example changes that count by at most 1, so it is a one-shot Gaussian release of sensitivity 1 (the
kernel's :func:`~dpbench.privacy.statistics_release.release_sum` with bound 1), recorded in the trial's
ledger and accounted with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from dpbench.data import DatasetSplits
from dpbench.engine.independence import ModelStateGuard
from dpbench.privacy.containment import call_contained
from dpbench.privacy.example_split import example_keys, held_out
from dpbench.privacy.noise import NoiseSource
from dpbench.privacy.statistics_release import StatisticsRelease, release_sum

SCORE_RELEASE = "validation_score"


@dataclass(frozen=True)
class ValidationSplit:
    """The held-out private examples and the release their score is published through."""

    features: torch.Tensor
    labels: torch.Tensor
    release: StatisticsRelease

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


def carve_validation(
    data: DatasetSplits, fraction: float, score_noise: float, seed: int
) -> tuple[DatasetSplits, ValidationSplit]:
    """Move a ``fraction`` of the training examples (in expectation) into a validation split, each example by a
    hash of its own bytes keyed by ``seed`` (:mod:`dpbench.privacy.example_split`: one added example moves no
    other between the trial's training set and its validation set); its score is released with noise std
    ``score_noise``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    validation = held_out(example_keys(data.train_features, data.train_labels), fraction, seed)
    held = int(validation.sum())
    if held == 0 or held == data.train_size:
        raise ValueError(
            f"a validation fraction of {fraction} of {data.train_size} training examples held out {held}: raise or "
            "lower tune.validation_fraction (each example is held out on its own, so the share is random)"
        )
    release = StatisticsRelease(SCORE_RELEASE, bound=1.0, noise_multiplier=score_noise)
    split = ValidationSplit(data.train_features[validation], data.train_labels[validation], release)
    train = ~validation
    return replace(data, train_features=data.train_features[train], train_labels=data.train_labels[train]), split


@torch.no_grad()
def correct_predictions(
    model: nn.Module, features: torch.Tensor, labels: torch.Tensor, batch_size: int = 2048
) -> torch.Tensor:
    """One row per example: 1.0 if the classifier predicts its label, else 0.0 (``[n, 1]``, float64).

    Each example's prediction is computed from that example alone (``vmap`` over the examples, or one example
    at a time where the model cannot be vmapped): a model that mixes examples in eval mode (a batch mean taken
    only when not training, which the engine's training-mode checks do not see) would otherwise let one example
    move many others' predictions, and the count's sensitivity would not be 1."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = []
    try:
        for start in range(0, labels.shape[0], batch_size):
            logits = _each_alone(model, features[start : start + batch_size].to(device))
            rows.append((logits.argmax(dim=1) == labels[start : start + batch_size].to(device)).to(torch.float64))
    finally:
        model.train(was_training)
    return torch.cat(rows).cpu().unsqueeze(1)


def _each_alone(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """``model``'s output for each example of ``batch`` computed as a batch of one."""
    try:
        return torch.func.vmap(lambda x: model(x.unsqueeze(0)).squeeze(0))(batch)
    except Exception:  # noqa: BLE001 - a model vmap cannot run (in-place ops on captured state, ...): one at a time
        return torch.cat([model(batch[i : i + 1]) for i in range(batch.shape[0])])


def released_score(model: nn.Module, split: ValidationSplit, source: NoiseSource) -> float:
    """The noised validation accuracy: (correct count + N(0, score_noise^2)) / validation size. Scoring the
    private validation examples must leave the model's state other than its parameters as it was
    (:class:`~dpbench.engine.independence.ModelStateGuard`): the model is reported after it. The model's code
    runs contained, as in training (:mod:`dpbench.privacy.containment`)."""
    guard = ModelStateGuard(model)
    rows = call_contained(type(model).__name__, "scoring the private validation split", correct_predictions, model,
                          split.features, split.labels, kind="model")
    guard.check("scoring the private validation split")
    noised_count = release_sum([rows], split.release, source)
    return float(noised_count[0]) / split.size
