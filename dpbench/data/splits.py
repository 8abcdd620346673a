"""The in-memory train/test tensors that the trainer samples from."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DatasetSplits:
    """A whole dataset held as tensors, ready for Poisson-sampled indexing.

    Features are float32, already normalized, shaped ``[N, *input_shape]``;
    labels are int64 class indices shaped ``[N]``.
    """

    name: str
    train_features: torch.Tensor
    train_labels: torch.Tensor
    test_features: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            features = getattr(self, f"{split}_features")
            labels = getattr(self, f"{split}_labels")
            if features.dtype != torch.float32 or labels.dtype != torch.int64:
                raise TypeError(
                    f"{self.name} {split}: expected float32 features and int64 labels, "
                    f"got {features.dtype} and {labels.dtype}"
                )
            if features.shape[0] != labels.shape[0] or labels.dim() != 1:
                raise ValueError(
                    f"{self.name} {split}: {features.shape[0]} feature rows but labels of shape "
                    f"{tuple(labels.shape)}"
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
