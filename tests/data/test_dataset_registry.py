"""The dataset registry, root resolution and the DatasetSplits record."""

from pathlib import Path

import pytest
import torch

from dpbench.data import DatasetSplits, dataset_names, load_dataset, register_dataset
from dpbench.data.registry import resolve_root


def test_known_dataset_names() -> None:
    assert dataset_names() == ["cifar10", "digits", "fmnist", "mnist"]


def test_unknown_dataset_error_lists_known_names() -> None:
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'") as info:
        load_dataset("imagenet")
    for name in ("cifar10", "digits", "fmnist", "mnist"):
        assert name in str(info.value)


def test_registering_a_taken_name_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("mnist")(lambda root, verify, download: None)


def test_explicit_root_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPBENCH_DATA_ROOT", "/from/env")
    assert resolve_root("/explicit") == Path("/explicit")


def test_root_falls_back_to_environment_then_data_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPBENCH_DATA_ROOT", "/from/env")
    assert resolve_root(None) == Path("/from/env")
    monkeypatch.delenv("DPBENCH_DATA_ROOT")
    assert resolve_root(None) == Path("data_root")


def _splits(train_rows: int, train_labels: int) -> DatasetSplits:
    return DatasetSplits(
        name="toy",
        train_features=torch.zeros(train_rows, 1, 4, 4),
        train_labels=torch.zeros(train_labels, dtype=torch.int64),
        test_features=torch.zeros(2, 1, 4, 4),
        test_labels=torch.zeros(2, dtype=torch.int64),
        num_classes=3,
    )


def test_splits_report_input_shape_and_train_size() -> None:
    splits = _splits(5, 5)
    assert splits.input_shape == (1, 4, 4)
    assert splits.train_size == 5


def test_splits_reject_mismatched_feature_and_label_counts() -> None:
    with pytest.raises(ValueError, match="toy train"):
        _splits(5, 4)


def test_splits_reject_non_integer_labels() -> None:
    with pytest.raises(TypeError, match="int64 labels"):
        DatasetSplits("toy", torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 3), torch.zeros(2), 2)
