"""``python -m dpbench [overrides]``: one run (or, with ``-m``, a sweep) from the Hydra configs in conf/.

A run that fails writes its full traceback to ``error.txt`` in its run directory and a row with
``status: failed`` to the results table. A single run then exits with status 1; an error in the user's
input or in a run's state (a bad config key or value, a plugin that cannot be imported or raises, a damaged
checkpoint, ...) is printed as one paragraph on stderr, with no traceback. In a sweep a failing run does not
stop the others: the sweep logs it and goes on. Finished runs are skipped when a sweep is launched again
(with ``resume=true``, unfinished ones continue from their checkpoints).
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dpbench.data.integrity import DatasetChecksumError, DatasetNotFoundError
from dpbench.engine.independence import ExampleMixingError
from dpbench.errors import DpbenchError
from dpbench.privacy.calibration import PrivacyConfigError
from dpbench.privacy.mechanism import MechanismContractError, PluginError
from dpbench.reporting.run_files import append_result_row, write_atomic
from dpbench.runtime import tune_allocator
from dpbench.training.experiment import run_experiment
from dpbench.training.plugin_loader import MechanismNotFoundError
from dpbench.training.run_directory import directory_name, public_proxy_run_name
from dpbench.verification.findings import VerificationError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("dpbench")

# Errors in the user's input, code or files, whose message names the problem and the fix: shown without traceback.
USER_ERRORS = (
    DpbenchError,
    DatasetChecksumError,
    DatasetNotFoundError,
    ExampleMixingError,
    InstantiationException,
    MechanismContractError,
    MechanismNotFoundError,
    OmegaConfBaseException,
    PluginError,
    PrivacyConfigError,
    VerificationError,
)

OmegaConf.register_new_resolver("run_name", directory_name, replace=True)
OmegaConf.register_new_resolver("public_proxy_run", public_proxy_run_name, replace=True)


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    tune_allocator()
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    try:
        accuracy = run_experiment(cfg, run_dir)["final_accuracy"]
    except Exception as error:
        record_failure(run_dir, Path(cfg.paths.results) / "results.jsonl", error)
        if hydra_config.mode == RunMode.MULTIRUN:  # a sweep records the failure and goes on with the other runs
            log.error("run %s failed (%s: %s); the sweep goes on", run_dir, type(error).__name__, error)
            return None
        if isinstance(error, USER_ERRORS):
            print(error_paragraph(error, run_dir / "error.txt"), file=sys.stderr)
            sys.exit(1)
        raise
    (run_dir / "error.txt").unlink(missing_ok=True)  # from an earlier, failed attempt
    return accuracy


def record_failure(run_dir: Path, results_table: Path, error: BaseException) -> None:
    """The full traceback to ``run_dir/error.txt`` and a ``status: failed`` row to the results table."""
    write_atomic(run_dir / "error.txt", traceback.format_exc())
    append_result_row(
        results_table, {"status": "failed", "run_dir": str(run_dir), "error": f"{type(error).__name__}: {error}"}
    )


def error_paragraph(error: BaseException, traceback_file: Path) -> str:
    """One paragraph: the error's type and message on one line each, where the traceback went."""
    message = " ".join(str(error).split())
    return f"dpbench: {type(error).__name__}: {message}\n(full traceback: {traceback_file})"
