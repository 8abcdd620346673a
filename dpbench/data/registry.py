"""Registry of dataset loaders: a new dataset is one decorated function in one file."""

import os
from collections.abc import Callable
from pathlib import Path

from dpbench.data.splits import DatasetSplits

DatasetLoader = Callable[[Path, bool, bool], DatasetSplits]
"""Loads a dataset given ``(root, verify_checksums, download)``."""

DEFAULT_ROOT = "data_root"
ROOT_ENV_VAR = "DPBENCH_DATA_ROOT"

_LOADERS: dict[str, DatasetLoader] = {}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register the decorated function as the loader of dataset ``name``."""

    def register(loader: DatasetLoader) -> DatasetLoader:
        if name in _LOADERS:
            raise ValueError(f"Dataset '{name}' is already registered")
        _LOADERS[name] = loader
        return loader

    return register


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return sorted(_LOADERS)


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` if given, else ``$DPBENCH_DATA_ROOT``, else ``./data_root``."""
    if root is None:
        root = os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT
    return Path(root).expanduser()


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    verify_checksums: bool = True,
    download: bool = False,
) -> DatasetSplits:
    """Load dataset ``name`` entirely into memory as normalized tensors.

    Args:
        name: a registered dataset name (see :func:`dataset_names`).
        root: the data root; ``None`` means ``$DPBENCH_DATA_ROOT`` or ``./data_root``.
        verify_checksums: check the files' md5s before loading; if False, load them
            unverified with a warning.
        download: try to download missing files (needs network access).

    Raises:
        ValueError: ``name`` is not registered.
        DatasetNotFoundError: the files are missing and were not downloaded.
        DatasetChecksumError: the files are present but fail the md5 check.
    """
    if name not in _LOADERS:
        raise ValueError(f"Unknown dataset '{name}'. Known datasets: {', '.join(dataset_names())}")
    return _LOADERS[name](resolve_root(root), verify_checksums, download)
