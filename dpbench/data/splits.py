"""The classification workload: images (or features) and class labels held in memory as tensors."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dpbench.workload import LossFunction, Workload


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
