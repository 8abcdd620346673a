"""conf/model/*.yaml instantiate the intended networks through Hydra."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dpbench.models import Cifar10TanhCNN, DigitsTanhCNN, MnistTanhCNN

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


@pytest.mark.parametrize(
    ("config", "model_class"),
    [("mnist_cnn", MnistTanhCNN), ("cifar10_cnn", Cifar10TanhCNN), ("digits_cnn", DigitsTanhCNN)],
)
def test_model_config_instantiates(config: str, model_class: type) -> None:
    assert type(instantiate(OmegaConf.load(CONF / f"{config}.yaml"))) is model_class
