"""Compose dpbench configs the way the CLI does, for fast end-to-end runs on the digits dataset."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import dpbench.cli  # noqa: F401  (registers the config resolvers)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@pytest.fixture
def make_config(tmp_path: Path):
    """``make_config(*overrides)``: the composed config of a short digits run writing under tmp_path."""

    def compose_config(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(
                "config",
                overrides=["train.epochs=2", "progress=false", f"paths.results={tmp_path / 'results'}", *overrides],
            )

    return compose_config
