"""The classification workload: images (or features) and class labels held in memory as tensors."""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dpbench.models.released_normalization import ReleasedNormalization, channel_statistics
from dpbench.privacy.ledger import StepRecord
from dpbench.privacy.noise import NoiseSource
from dpbench.privacy.statistics_release import StatisticsRelease, release_sum
from dpbench.workload import LossFunction, Workload, WorkloadError

RELEASE_CHUNK = 8192  # training rows per chunk of a statistics release
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSplits(Workload):
    """A classification dataset held as tensors, ready for Poisson-sampled indexing: cross-entropy loss,
    test accuracy as its evaluation.

    Features are float32, already normalized, shaped ``[N, *input_shape]``; labels are int64 class indices
    shaped ``[N]``.
    """

    num_classes: int

    def __post_init__(self) -> None:
        super().__post_init__()
        for split in ("train", "test"):
            labels = getattr(self, f"{split}_labels")
            if labels.dtype != torch.int64:
                raise TypeError(f"{self.name} {split}: expected int64 labels (class indices), got {labels.dtype}")

    def loss(self, model: nn.Module) -> LossFunction:
        return F.cross_entropy

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return {"test_accuracy": accuracy(model, self.test_features, self.test_labels, device)}

    def statistics_releases(self, model: nn.Module) -> tuple[StatisticsRelease, ...]:
        """The training-set input statistics that ``model``'s :class:`ReleasedNormalization` needs (none for a
        model without one)."""
        return tuple(release for name, module in self._normalizations(model) for release in module.releases(name))

    def release_statistics(self, model: nn.Module, run_dir: Path, generator: NoiseSource) -> list[StepRecord]:
        """Release, through the kernel, the sums of every training example's per-channel input mean and mean
        square, and set the model's normalisation from them (the privacy argument is in
        :mod:`dpbench.models.released_normalization`)."""
        records = []
        for name, module in self._normalizations(model):
            sums = {}
            for release in module.releases(name):
                statistic = release.name.rsplit(".", 1)[1]
                chunks = (channel_statistics(self.train_features[i : i + RELEASE_CHUNK])[statistic]
                          for i in range(0, self.train_size, RELEASE_CHUNK))
                sums[statistic] = release_sum(chunks, release, generator)
                records.append(release.record())
            module.set_statistics(sums, self.train_size)
            log.info("released the per-channel input mean and variance of %d training examples for %s (noise "
                     "multiplier %.3g)", self.train_size, name or "the model", module.noise_multiplier)
        return records

    def _normalizations(self, model: nn.Module) -> list[tuple[str, ReleasedNormalization]]:
        """The model's :class:`ReleasedNormalization` (at most one, normalising the model's input)."""
        found = [(name, module) for name, module in model.named_modules() if isinstance(module, ReleasedNormalization)]
        if len(found) > 1:
            raise WorkloadError(f"{type(model).__name__} has {len(found)} ReleasedNormalization modules "
                                f"({', '.join(name for name, _ in found)}); dpbench releases the statistics of the "
                                "model's input for one, which must normalise the input")
        for name, module in found:
            if module.channels != self.input_shape[0]:
                raise WorkloadError(
                    f"{name} (ReleasedNormalization) normalises {module.channels} channels but {self.name}'s inputs "
                    f"have {self.input_shape[0]}: it must normalise the model's input")
        return found


@torch.no_grad()
def accuracy(
    model: nn.Module, features: torch.Tensor, labels: torch.Tensor, device: torch.device, batch_size: int = 2048
) -> float:
    """Share of ``features`` whose arg-max logit is the label, with the model in evaluation mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(labels), batch_size):
        logits = model(features[i : i + batch_size].to(device))
        correct += int((logits.argmax(dim=1) == labels[i : i + batch_size].to(device)).sum())
    model.train(was_training)
    return correct / len(labels)


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Standardize ``[N, C, H, W]`` images in [0, 1] channel by channel.

    The statistics are fixed public constants, not computed from the training
    set: statistics of private data would themselves leak privacy.
    """
    shape = (1, len(mean), 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32).view(shape)
    return ((images - mean_t) / std_t).contiguous()
