"""Shared pytest fixtures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import dpbench.cli  # noqa: F401  (registers the config resolvers)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def vision_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision data root with MNIST, Fashion-MNIST and the CIFAR-10 stand-in, built once per session.

    Built by ``prepare.sh`` from the shared data folder: ``$DPBENCH_SHARED/data`` if that
    variable is set, else ``../shared/data`` beside the repository.
    """
    shared = Path(os.environ.get("DPBENCH_SHARED", REPO_ROOT.parent / "shared"))
    prepare = shared / "data" / "prepare.sh"
    if not prepare.is_file():
        pytest.fail(f"{prepare} not found: put the shared folder beside the repository or set DPBENCH_SHARED")
    root = tmp_path_factory.mktemp("data_root")
    subprocess.run(["bash", str(prepare), str(root), sys.executable], check=True, capture_output=True)
    return root


CONFIG_DIR = str(REPO_ROOT / "conf")


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


@pytest.fixture
def run_killed_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch):
    """``run_killed_after_first_checkpoint(cfg, run_dir)``: run an experiment that dies (KeyboardInterrupt)
    right after writing its first checkpoint, as a killed process would."""
    import dpbench.training.experiment as experiment
    from dpbench.training.experiment import run_experiment

    real_save = experiment.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("killed after the first checkpoint")

    def run(cfg: DictConfig, run_dir: Path) -> None:
        monkeypatch.setattr(experiment, "save_checkpoint", save_then_die)
        try:
            with pytest.raises(KeyboardInterrupt):
                run_experiment(cfg, run_dir)
        finally:
            monkeypatch.setattr(experiment, "save_checkpoint", real_save)

    return run
