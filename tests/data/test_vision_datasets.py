"""MNIST, Fashion-MNIST and the CIFAR-10 stand-in loaded from a data root: the real files built by
prepare.sh (when the shared datasets are there) and, always, tiny files of the same formats."""

import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision import datasets

from dpbench.data import DatasetChecksumError, DatasetNotFoundError, DatasetSplits, load_dataset

MNIST_TRAIN_HISTOGRAM = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def mnist(real_vision_data_root: Path) -> DatasetSplits:
    return load_dataset("mnist", root=real_vision_data_root)


@pytest.fixture(scope="module")
def fmnist(real_vision_data_root: Path) -> DatasetSplits:
    return load_dataset("fmnist", root=real_vision_data_root)


@pytest.fixture(scope="module")
def cifar10(real_vision_data_root: Path) -> DatasetSplits:
    with pytest.warns(UserWarning, match="lossy JPEG stand-in"):
        return load_dataset("cifar10", root=real_vision_data_root, verify_checksums=False)


@pytest.mark.parametrize("name, shape", [("mnist", (1, 28, 28)), ("fmnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_the_loaders_read_files_of_each_format(vision_data_root: Path, name: str, shape: tuple) -> None:
    with pytest.warns(UserWarning, match="without md5 verification"):
        data = load_dataset(name, root=vision_data_root, verify_checksums=False)
    assert data.input_shape == shape and data.num_classes == 10
    assert (data.train_size, len(data.test_labels)) == (2000, 200)
    assert torch.bincount(data.train_labels).tolist() == [200] * 10
    assert data.train_features.dtype == torch.float32 and torch.isfinite(data.train_features).all()


@pytest.mark.parametrize("name", ["mnist", "fmnist", "cifar10"])
def test_files_that_are_not_the_originals_fail_the_checksum(vision_data_root: Path, name: str) -> None:
    with pytest.raises(DatasetChecksumError, match="fail the md5 check.*dataset.verify_checksums=false"):
        load_dataset(name, root=vision_data_root)


def _assert_standardized(features: torch.Tensor, std_tolerance: float) -> None:
    per_channel = features.transpose(0, 1).flatten(1)
    assert per_channel.mean(1).abs().max() < 0.01
    assert (per_channel.std(1) - 1).abs().max() < std_tolerance


@pytest.mark.slow
def test_mnist(mnist: DatasetSplits) -> None:
    assert (mnist.train_size, len(mnist.test_labels)) == (60000, 10000)
    assert mnist.input_shape == (1, 28, 28) and mnist.num_classes == 10
    assert torch.bincount(mnist.train_labels).tolist() == MNIST_TRAIN_HISTOGRAM
    _assert_standardized(mnist.train_features, std_tolerance=0.01)


def test_fashion_mnist(fmnist: DatasetSplits) -> None:
    assert (fmnist.train_size, len(fmnist.test_labels)) == (60000, 10000)
    assert fmnist.input_shape == (1, 28, 28) and fmnist.num_classes == 10
    assert torch.bincount(fmnist.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fmnist.test_labels).tolist() == [1000] * 10
    _assert_standardized(fmnist.train_features, std_tolerance=0.01)


@pytest.mark.slow
def test_cifar10_stand_in_loads_unverified(cifar10: DatasetSplits) -> None:
    assert (cifar10.train_size, len(cifar10.test_labels)) == (50000, 10000)
    assert cifar10.input_shape == (3, 32, 32) and cifar10.num_classes == 10
    assert torch.bincount(cifar10.train_labels).tolist() == [5000] * 10
    assert torch.bincount(cifar10.test_labels).tolist() == [1000] * 10
    # JPEG smoothing lowers the stand-in's pixel std about 1% below the reference statistics.
    _assert_standardized(cifar10.train_features, std_tolerance=0.02)


def test_cifar10_stand_in_fails_checksum_with_a_way_out(real_vision_data_root: Path) -> None:
    with pytest.raises(DatasetChecksumError) as info:
        load_dataset("cifar10", root=real_vision_data_root)
    message = str(info.value)
    assert "present" in message and "fail the md5 check" in message
    assert "data_batch_1" in message and "stand-in" in message
    assert "dataset.verify_checksums=false" in message


def test_corrupted_mnist_file_fails_checksum(real_vision_data_root: Path, tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (real_vision_data_root / "MNIST" / "raw").iterdir():
        (raw / source.name).symlink_to(source)
    labels = raw / "t10k-labels-idx1-ubyte"
    content = bytearray(labels.read_bytes())
    content[-1] = (content[-1] + 1) % 10
    labels.unlink()
    labels.write_bytes(bytes(content))
    with pytest.raises(DatasetChecksumError, match="t10k-labels-idx1-ubyte") as info:
        load_dataset("mnist", root=tmp_path)
    assert "train-images" not in str(info.value)


@pytest.mark.parametrize("name", ["mnist", "fmnist", "cifar10"])
def test_missing_root_says_how_to_build_it(name: str, tmp_path: Path) -> None:
    root = tmp_path / "empty_root"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=root)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert name in message and str(root) in message
    assert "prepare.sh" in message and "DPBENCH_DATA_ROOT" in message and "dataset.root=" in message


def test_missing_root_comes_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DPBENCH_DATA_ROOT", str(tmp_path / "env_root"))
    with pytest.raises(DatasetNotFoundError, match="env_root"):
        load_dataset("mnist")


def test_partial_root_names_the_missing_files(vision_data_root: Path, tmp_path: Path) -> None:
    shutil.copytree(vision_data_root / "FashionMNIST", tmp_path / "FashionMNIST")
    (tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing FashionMNIST/raw/t10k-images-idx3-ubyte\\."):
        load_dataset("fmnist", root=tmp_path)


def test_failed_download_is_a_dataset_not_found_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(self: datasets.MNIST) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(DatasetNotFoundError, match="downloading it failed") as info:
        load_dataset("mnist", root=tmp_path, download=True)
    assert "Name or service not known" in str(info.value) and "prepare.sh" in str(info.value)
