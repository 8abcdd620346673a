"""A tiny torchvision data root written from scratch, in the exact file formats of MNIST, Fashion-MNIST
(uncompressed IDX) and CIFAR-10 (python pickles), so that the default test run exercises the real
loaders on a machine without the shared datasets. Its files are not the originals: they fail the md5
checks (load them with ``verify_checksums=False``), and nothing about accuracy can be learned from them."""

import pickle
import struct
from pathlib import Path

import numpy as np

TRAIN, TEST = 2000, 200


def _idx(path: Path, array: np.ndarray) -> None:
    code = 0x08  # unsigned byte
    header = struct.pack(">I", (code << 8) | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _mnist_like(folder: Path, rng: np.random.Generator) -> None:
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", TRAIN), ("t10k", TEST)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[np.arange(n), labels * 2 + 4, 4:24] = 255  # a learnable stroke whose row is the label
        _idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def _cifar_like(folder: Path, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in batches:
        n = TEST if name == "test_batch" else TRAIN // 5
        labels = list(np.arange(n) % 10)
        data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)


def build_synthetic_root(root: Path, seed: int = 0) -> Path:
    """Write MNIST/, FashionMNIST/ and cifar-10-batches-py/ under ``root``."""
    rng = np.random.default_rng(seed)
    _mnist_like(root / "MNIST", rng)
    _mnist_like(root / "FashionMNIST", rng)
    _cifar_like(root / "cifar-10-batches-py", rng)
    return root
