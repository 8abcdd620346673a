"""``python -m dpbench [overrides]``: one run (or, with ``-m``, a sweep) from the Hydra configs in conf/.

In a sweep a failing run does not stop the others: its traceback goes to ``error.txt`` in its run
directory and a row with ``status: failed`` to the results table, and the sweep goes on. Finished
runs are skipped when a sweep is launched again (with ``resume=true``, unfinished ones continue
from their checkpoints).
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dpbench.reporting.run_files import append_result_row, write_atomic
from dpbench.runtime import tune_allocator
from dpbench.training.experiment import run_experiment

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("dpbench")

OmegaConf.register_new_resolver("run_name", lambda overrides: overrides or "default", replace=True)


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    tune_allocator()
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    if hydra_config.mode != RunMode.MULTIRUN:
        return run_experiment(cfg, run_dir)["final_accuracy"]
    try:
        return run_experiment(cfg, run_dir)["final_accuracy"]
    except Exception as error:  # a sweep records the failure and goes on with the other runs
        write_atomic(run_dir / "error.txt", traceback.format_exc())
        append_result_row(
            Path(cfg.paths.results) / "results.jsonl",
            {"status": "failed", "run_dir": str(run_dir), "error": f"{type(error).__name__}: {error}"},
        )
        log.error("run %s failed (%s: %s); the sweep goes on", run_dir, type(error).__name__, error)
        return None
