"""``dataset=telemetry``: the wide table of a corpus of reporting tables, as a dpbench dataset.

The corpus is a user's real tables (``path=DIR``) or, by default, a simulated corpus of ``devices``
devices, written once under ``root/telemetry/`` and reused. Each device is one example (so
example-level DP is device-level DP); a fixed share is held out to measure the model's test loss.
Labels are zeros: the models are generative and read their target from the row itself.

After training, :meth:`TelemetrySplits.utility` samples as many synthetic devices as the corpus has,
decodes them into reporting tables in the run directory and scores the benchmark queries against
the same queries on the input corpus (:mod:`dpbench.telemetry.synthesis`); :func:`synthesize_run`
does the same later from a run directory's configuration and checkpointed model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dpbench.data.splits import DatasetSplits
from dpbench.reporting.run_files import RunFiles
from dpbench.telemetry.corpus import open_table
from dpbench.telemetry.simulator import simulated_corpus
from dpbench.telemetry.synthesis import synthesize_and_score
from dpbench.telemetry.wide_table import build_wide_table
from dpbench.training.checkpoint import load_released_model

log = logging.getLogger("dpbench")


@dataclass(frozen=True)
class TelemetrySplits(DatasetSplits):
    """Wide rows of a telemetry corpus, with where the corpus lives (the utility reference)."""

    tables_dir: Path = Path()
    n_devices: int = 0
    public_prior: bool = True

    def utility(self, model: torch.nn.Module, run_dir: Path, seed: int) -> dict:
        """Synthesize ``n_devices`` devices into ``run_dir/synthetic/`` and score the queries."""
        utility = synthesize_and_score(model, self.n_devices, self.tables_dir, Path(run_dir) / "synthetic", seed,
                                       self.public_prior)
        log.info("synthetic data: %s (%.0f s)", utility["headline"], utility["seconds"])
        return utility


def corpus_dir(path: str | None, devices: int, simulation_seed: int, root: str) -> Path:
    """The directory of input tables: ``path`` if given, else the (cached) simulated corpus."""
    if path is not None:
        return Path(path).expanduser()
    return simulated_corpus(devices, simulation_seed, root)


def load_telemetry(path: str | None = None, devices: int = 20_000, simulation_seed: int = 0,
                   root: str = "data_root", test_fraction: float = 0.05, split_seed: int = 0,
                   public_prior: bool = True) -> TelemetrySplits:
    """The wide table of the tables in ``path``, or of ``devices`` simulated devices cached under ``root``;
    ``public_prior``: synthesis uses the SPEC's table sizes (:mod:`dpbench.telemetry.public_prior`)."""
    tables_dir = corpus_dir(path, devices, simulation_seed, root)
    wide = build_wide_table(tables_dir)
    n = len(wide.guids)
    order = np.random.default_rng(split_seed).permutation(n)
    n_test = max(1, round(test_fraction * n))
    features = torch.from_numpy(wide.features)
    test, train = torch.from_numpy(order[:n_test]), torch.from_numpy(order[n_test:])
    zeros = torch.zeros(n, dtype=torch.int64)
    return TelemetrySplits(
        name="telemetry", train_features=features[train], train_labels=zeros[train],
        test_features=features[test], test_labels=zeros[test], num_classes=1, tables_dir=tables_dir, n_devices=n,
        public_prior=public_prior,
    )


def synthesize_run(run_dir: Path | str, out_dir: Path | str | None = None, seed: int | None = None) -> dict:
    """Sample from a telemetry run's checkpointed model (its parameter EMA when the run kept one), decode
    into ``out_dir/tables`` (default ``run_dir/synthetic``), score against the run's input corpus.

    As many devices as the corpus has are sampled, with the run's seed unless ``seed`` is given. Only
    the released model is read, so this is post-processing: it spends no privacy.
    """
    files = RunFiles(Path(run_dir))
    for needed in (files.config, files.checkpoint):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} does not exist: pass the directory of a telemetry run "
                                    "(it holds config.yaml and checkpoint.pt)")
    cfg = OmegaConf.load(files.config)
    if cfg.dataset.get("_target_") != f"{__name__}.load_telemetry":
        raise ValueError(f"{files.dir} is a run on dataset {cfg.dataset.get('_target_')}, not telemetry")
    tables_dir = corpus_dir(cfg.dataset.path, cfg.dataset.devices, cfg.dataset.simulation_seed, cfg.dataset.root)
    model = instantiate(cfg.model)
    epoch, averaged = load_released_model(files.checkpoint, model)
    n_devices = open_table(tables_dir, "system_sysinfo_unique_normalized").num_rows
    utility = synthesize_and_score(model, n_devices, tables_dir, Path(out_dir or files.dir / "synthetic"),
                                   cfg.seed if seed is None else seed, cfg.dataset.get("public_prior", True))
    return utility | {"epoch": epoch, "parameter_ema": averaged}
