"""In-memory datasets for DP-SGD: each is a :class:`DatasetSplits` of normalized tensors.

Load one by name with :func:`load_dataset` (or Hydra ``conf/dataset/*.yaml``); add one
by decorating a loader with :func:`register_dataset` in a module imported here.
"""

from dpbench.data import digits, vision  # noqa: F401  (importing them registers their loaders)
from dpbench.data.integrity import DatasetChecksumError, DatasetNotFoundError
from dpbench.data.registry import dataset_names, load_dataset, register_dataset
from dpbench.data.splits import DatasetSplits

__all__ = [
    "DatasetChecksumError",
    "DatasetNotFoundError",
    "DatasetSplits",
    "dataset_names",
    "load_dataset",
    "register_dataset",
]
