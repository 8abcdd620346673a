"""conf/dataset/*.yaml load the intended datasets through Hydra."""

from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dpbench.data import DatasetNotFoundError, dataset_names

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def dataset_config(name: str):
    """The ``dataset`` node of conf/dataset/NAME.yaml (a global-package file that also picks defaults)."""
    return OmegaConf.load(CONF / f"{name}.yaml").dataset


def test_every_dataset_has_a_config_named_after_it() -> None:
    for name in dataset_names():
        config = dataset_config(name)
        assert config._target_ == "dpbench.data.load_dataset"
        assert config.name == name
        assert config.verify_checksums is True and config.download is False


def test_digits_config_instantiates() -> None:
    splits = instantiate(dataset_config("digits"))
    assert (splits.name, splits.train_size) == ("digits", 1437)


def test_config_root_comes_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DPBENCH_DATA_ROOT", str(tmp_path / "env_root"))
    config = dataset_config("mnist")
    assert config.root == str(tmp_path / "env_root")
    monkeypatch.delenv("DPBENCH_DATA_ROOT")
    assert config.root == "data_root"
    with pytest.raises(InstantiationException) as info:
        instantiate(config, root=str(tmp_path / "missing"))
    assert isinstance(info.value.__cause__, DatasetNotFoundError)
