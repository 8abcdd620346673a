"""ScatterNet features: a fixed, data-independent wavelet transform of every image.

Tramèr & Boneh (ICLR 2021) showed that DP-SGD on the scattering transform of Oyallon & Mallat
(CVPR 2015) beats end-to-end CNNs at the same ε on MNIST, Fashion-MNIST and CIFAR-10. The
transform (kymatio's ``Scattering2D``, Morlet wavelets, ``J`` scales, ``L`` angles) has no
learned and no data-dependent part: it maps each example on its own, so a dataset and its
neighbour still differ in exactly one row after it, and it costs no privacy. Per-example input
normalisation (GroupNorm without parameters, in :mod:`dpbench.models.scatter_net`) keeps that
property; normalisation by the training set's statistics is offered only through a DP release of them
(:mod:`dpbench.models.released_normalization`), which is in the run's ledger.

The transform is computed once per dataset and cached under ``<data root>/scattering/``, keyed by
a fingerprint of the pixels, so later runs load it in seconds (and need kymatio, the ``dpbench[scatter]``
extra, only to compute it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from dpbench.data.registry import load_dataset, resolve_root
from dpbench.data.splits import DatasetSplits
from dpbench.extras import require_extra
from dpbench.runtime import pick_device

CACHE_FOLDER = "scattering"


def scattering_transform(images: torch.Tensor, J: int = 2, L: int = 8, batch_size: int = 1024) -> torch.Tensor:
    """Scattering coefficients of ``[N, C, H, W]`` images: ``[N, C * K, H / 2^J, W / 2^J]`` float32.

    ``K = 1 + J L + L² J (J - 1) / 2`` coefficients per colour channel (81 for J=2, L=8): order 0
    (the low-pass image), order 1 (|x ⋆ ψ| low-passed) and order 2. Runs on CUDA when available.
    """
    if images.dim() != 4:
        raise ValueError(f"scattering expects images shaped [N, C, H, W], got {tuple(images.shape)}")
    require_extra("scatter")
    # kymatio.torch also imports the 3-D frontend, whose filter bank needs scipy.special.sph_harm
    # (removed in SciPy 1.17); the 2-D frontend alone does not.
    from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

    height, width = images.shape[-2:]
    if min(height, width) < 2**J:
        raise ValueError(f"scattering with J={J} needs images of at least {2**J}x{2**J} pixels, got {height}x{width}")
    device = pick_device("auto")
    scattering = ScatteringTorch2D(J=J, shape=(height, width), L=L).to(device)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            coefficients = scattering(images[start : start + batch_size].to(device))  # [n, C, K, h, w]
            outputs.append(coefficients.flatten(1, 2).float().cpu())
    return torch.cat(outputs)


def pixel_fingerprint(splits: DatasetSplits) -> str:
    """A short hash of both splits' pixels and labels: a cache entry is reused only for identical data."""
    digest = hashlib.sha256()
    for tensor in (splits.train_features, splits.train_labels, splits.test_features, splits.test_labels):
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_scattered_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    verify_checksums: bool = True,
    download: bool = False,
    J: int = 2,
    L: int = 8,
    cache: bool = True,
) -> DatasetSplits:
    """Dataset ``name`` (see :func:`dpbench.data.load_dataset`) with its images replaced by their
    scattering coefficients ``[C * K, H / 2^J, W / 2^J]`` (MNIST 81x7x7, CIFAR-10 243x8x8).

    With ``cache``, the coefficients are read from (or written to) ``<root>/scattering/``; a cached file is
    memory-mapped, not copied: its pages are the operating system's file cache, shared by every run that reads
    it (CIFAR-10's coefficients are 3.7 GB) and read back from disk if memory runs short.
    """
    pixels = load_dataset(name, root, verify_checksums, download)
    cache_file = resolve_root(root) / CACHE_FOLDER / f"{name}-J{J}-L{L}-{pixel_fingerprint(pixels)}.pt"
    if cache and cache_file.is_file():
        train_features, test_features = torch.load(cache_file, weights_only=True, mmap=True)
    else:
        train_features = scattering_transform(pixels.train_features, J, L)
        test_features = scattering_transform(pixels.test_features, J, L)
        if cache:
            _save_atomically((train_features, test_features), cache_file)
    return DatasetSplits(
        name=f"{name}_scattering",
        train_features=train_features,
        train_labels=pixels.train_labels,
        test_features=test_features,
        test_labels=pixels.test_labels,
        num_classes=pixels.num_classes,
    )


def _save_atomically(value: object, path: Path) -> None:
    """Write to a temporary file beside ``path`` and rename it, so a killed run leaves no partial cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{os.getpid()}")
    torch.save(value, partial)
    os.replace(partial, path)
