"""MNIST, Fashion-MNIST and CIFAR-10 read from a torchvision data root into memory."""

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets

from dpbench.data.integrity import PREPARE_HINT, DatasetNotFoundError, require_files, verify_checksums
from dpbench.data.registry import register_dataset
from dpbench.data.splits import DatasetSplits, normalize


class _PreverifiedCIFAR10(datasets.CIFAR10):
    """CIFAR-10 reader without torchvision's md5 check: :func:`load_vision_dataset` verifies (or skips) it."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as handle:
            self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


@dataclass(frozen=True)
class VisionSource:
    """Where a torchvision dataset lives in the data root and how to standardize it.

    ``checksums`` maps each file, relative to the root, to its expected md5.
    ``mean``/``std`` are the customary public per-channel statistics of the
    dataset, in [0, 1] pixel units. ``unverified_note`` is added to the checksum
    error and to the warning issued when the check is skipped.
    """

    name: str
    download_class: type[datasets.VisionDataset]
    reader_class: type[datasets.VisionDataset]
    checksums: dict[str, str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 10
    unverified_note: str = ""


def _idx_checksums(folder: str, md5s: tuple[str, str, str, str]) -> dict[str, str]:
    """Expected md5s of the four uncompressed IDX files of an MNIST-format dataset."""
    files = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    return {f"{folder}/raw/{file}": md5 for file, md5 in zip(files, md5s, strict=True)}


# Published md5s of the original uncompressed IDX files (torchvision lists only the .gz archives' md5s).
MNIST = VisionSource(
    name="mnist",
    download_class=datasets.MNIST,
    reader_class=datasets.MNIST,
    checksums=_idx_checksums(
        "MNIST",
        ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
         "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
    ),
    mean=(0.1307,),
    std=(0.3081,),
)

FASHION_MNIST = VisionSource(
    name="fmnist",
    download_class=datasets.FashionMNIST,
    reader_class=datasets.FashionMNIST,
    checksums=_idx_checksums(
        "FashionMNIST",
        ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
         "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
    ),
    mean=(0.2860,),
    std=(0.3530,),
)

CIFAR10 = VisionSource(
    name="cifar10",
    download_class=datasets.CIFAR10,
    reader_class=_PreverifiedCIFAR10,
    checksums={
        f"{datasets.CIFAR10.base_folder}/{file}": md5
        for file, md5 in [
            *datasets.CIFAR10.train_list,
            *datasets.CIFAR10.test_list,
            (datasets.CIFAR10.meta["filename"], datasets.CIFAR10.meta["md5"]),
        ]
    },
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    unverified_note=(
        "The shared CIFAR-10 built by ../shared/data/prepare.sh is a lossy JPEG stand-in, not the original "
        "pixels, so its files fail torchvision's md5 check; results on it are not comparable to published "
        "CIFAR-10 numbers."
    ),
)


def _download(source: VisionSource, root: Path) -> None:
    """Fetch ``source`` into ``root`` with torchvision, as a :class:`DatasetNotFoundError` on failure."""
    try:
        source.download_class(root, train=True, download=True)
    except (OSError, RuntimeError) as error:
        raise DatasetNotFoundError(
            f"Dataset '{source.name}' not found in data root '{root}' and downloading it failed "
            f"({type(error).__name__}: {error}). " + PREPARE_HINT.format(root=root)
        ) from error


def _read_split(source: VisionSource, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as normalized float32 ``[N, C, H, W]`` features and int64 labels."""
    dataset = source.reader_class(root, train=train, download=False)
    images = torch.as_tensor(dataset.data)
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    features = normalize(images.float().div_(255.0), source.mean, source.std)
    return features, torch.as_tensor(dataset.targets, dtype=torch.int64)


def load_vision_dataset(source: VisionSource, root: Path, verify: bool, download: bool) -> DatasetSplits:
    """Check ``source``'s files in ``root`` (downloading if asked), then read both splits into memory."""
    try:
        require_files(source.name, root, source.checksums)
    except DatasetNotFoundError:
        if not download:
            raise
        _download(source, root)
        require_files(source.name, root, source.checksums)
    if verify:
        verify_checksums(source.name, root, source.checksums, source.unverified_note)
    else:
        warnings.warn(
            f"Loading '{source.name}' from '{root}' without md5 verification (verify_checksums=False)."
            + (f" {source.unverified_note}" if source.unverified_note else ""),
            UserWarning,
            stacklevel=4,
        )
    train_features, train_labels = _read_split(source, root, train=True)
    test_features, test_labels = _read_split(source, root, train=False)
    return DatasetSplits(
        name=source.name,
        train_features=train_features,
        train_labels=train_labels,
        test_features=test_features,
        test_labels=test_labels,
        num_classes=source.num_classes,
    )


@register_dataset("mnist")
def load_mnist(root: Path, verify: bool, download: bool) -> DatasetSplits:
    """MNIST handwritten digits: 60,000 / 10,000 images of shape [1, 28, 28], 10 classes."""
    return load_vision_dataset(MNIST, root, verify, download)


@register_dataset("fmnist")
def load_fashion_mnist(root: Path, verify: bool, download: bool) -> DatasetSplits:
    """Fashion-MNIST clothing images: 60,000 / 10,000 images of shape [1, 28, 28], 10 classes."""
    return load_vision_dataset(FASHION_MNIST, root, verify, download)


@register_dataset("cifar10")
def load_cifar10(root: Path, verify: bool, download: bool) -> DatasetSplits:
    """CIFAR-10 colour images: 50,000 / 10,000 images of shape [3, 32, 32], 10 classes."""
    return load_vision_dataset(CIFAR10, root, verify, download)
