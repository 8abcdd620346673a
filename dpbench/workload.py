"""The interface every workload implements: what the experiment and the training loop may ask of one.

A workload is a kind of task dpbench trains privately: image classification
(:class:`dpbench.data.DatasetSplits`) and telemetry synthesis (:class:`dpbench.telemetry.dataset.TelemetrySplits`)
are the two built in. It gives

* its **data splits**, held in memory as tensors: the private training rows the sampler draws from and the
  public test rows (evaluation, and the engine's independence check before training);
* its **loss** for a model (per-example gradients are taken of it, one example at a time);
* its **evaluation** after every epoch (test metrics, from the test split only);
* optionally **statistics releases** before training: DP releases of the training rows that a model uses
  (declared up front so that noise calibration accounts for them, then made once; their ledger records must
  be exactly the declared releases);
* optionally a **utility** score after training, which may write outputs (e.g. synthetic tables) into the
  run directory and returns what goes into ``summary.json["utility"]``.

Its default model and training preset are Hydra defaults in its ``conf/dataset/*.yaml``
(``override /model``, ``override /train``). The loop and the experiment call these methods and nothing else;
a new workload is one subclass and one YAML (``docs/workloads.md``).

Privacy: a workload is trusted harness code, not a measured plugin. What it computes from the training rows
before training must be a statistics release that the kernel's noise covers; the experiment checks only that
its ledger records are exactly the releases it declared (which calibration accounted for). ``evaluate`` reads
the test split. ``utility`` is the benchmark's measurement of what was released (the model and released statistics): it may
compare against the workload's reference data (telemetry scores the analysts' queries against the input
corpus, as the benchmark defines), so its numbers are a measurement, not a release, and nothing in a run
reads them back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from dpbench.engine.per_sample import LossFunction
from dpbench.errors import DpbenchError
from dpbench.privacy.ledger import StepRecord
from dpbench.privacy.statistics_release import StatisticsRelease


class WorkloadError(DpbenchError, TypeError):
    """A dataset config that does not build a workload, or a workload used where it cannot serve."""


@dataclass(frozen=True)
class Workload(ABC):
    """A workload's data splits and its hooks. Features are float32 rows ``[N, *input_shape]``; targets are
    ``[N]`` (their dtype is the workload's: class indices, values, or placeholders a model ignores)."""

    name: str
    train_features: Tensor
    train_labels: Tensor
    test_features: Tensor
    test_labels: Tensor

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            features, labels = getattr(self, f"{split}_features"), getattr(self, f"{split}_labels")
            if features.dtype != torch.float32:
                raise TypeError(f"{self.name} {split}: expected float32 features, got {features.dtype}")
            if features.shape[0] != labels.shape[0] or labels.dim() != 1:
                raise ValueError(
                    f"{self.name} {split}: {features.shape[0]} feature rows but labels of shape {tuple(labels.shape)}"
                )
        if self.train_features.shape[1:] != self.test_features.shape[1:]:
            raise ValueError(
                f"{self.name}: train inputs {tuple(self.train_features.shape[1:])} and test inputs "
                f"{tuple(self.test_features.shape[1:])} differ in shape"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, without the batch dimension."""
        return tuple(self.train_features.shape[1:])

    @property
    def train_size(self) -> int:
        """Number of training examples (the N in the sampling rate q = B / N)."""
        return self.train_features.shape[0]

    @abstractmethod
    def loss(self, model: nn.Module) -> LossFunction:
        """The training loss of ``model``'s output against the targets (mean over the batch)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Test metrics of ``model`` (test split only), recorded every epoch."""

    def statistics_releases(self, model: nn.Module) -> tuple[StatisticsRelease, ...]:
        """The DP releases of training statistics this run makes before training, for ``model`` (none by default)."""
        return ()

    def release_statistics(self, model: nn.Module, run_dir: Path, generator: torch.Generator) -> list[StepRecord]:
        """Make the releases :meth:`statistics_releases` declares, keep what ``utility`` needs in ``run_dir``,
        and return their ledger records (one per declared release)."""
        return []

    def utility(self, model: nn.Module, run_dir: Path, seed: int) -> dict | None:
        """Score the trained ``model`` for ``summary.json["utility"]``, writing any outputs into ``run_dir``;
        ``None``: the workload has no utility score beyond :meth:`evaluate`."""
        return None


@torch.no_grad()
def mean_test_loss(
    model: nn.Module, loss: LossFunction, features: Tensor, labels: Tensor, device: torch.device, batch_size: int = 4096
) -> float:
    """The mean of ``loss`` over the rows, in batches, with the model in evaluation mode."""
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(features), batch_size):
        rows = features[i : i + batch_size].to(device)
        total += float(loss(model(rows), labels[i : i + batch_size].to(device))) * len(rows)
    model.train(was_training)
    return total / max(len(features), 1)
