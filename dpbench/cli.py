"""``python -m dpbench [overrides]``: one run (or, with ``-m``, a sweep) from the Hydra configs in conf/."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dpbench.runtime import tune_allocator
from dpbench.training.experiment import run_experiment

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

OmegaConf.register_new_resolver("run_name", lambda overrides: overrides or "default", replace=True)


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    tune_allocator()
    summary = run_experiment(cfg, Path(HydraConfig.get().runtime.output_dir))
    return summary["final_accuracy"]
