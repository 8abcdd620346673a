"""``dataset=telemetry``: the wide table of a corpus of reporting tables, as a dpbench dataset.

The corpus is a user's real tables (``path=DIR``) or, by default, a simulated corpus of ``devices``
devices, written once under ``root/telemetry/`` and reused. Each device is one example (so
example-level DP is device-level DP); a fixed share is held out to measure the model's test loss.
Labels are zeros: the models are generative and read their target from the row itself.

After training, :meth:`TelemetrySplits.utility` samples as many synthetic devices as the corpus has,
decodes them into reporting tables in the run directory and scores the benchmark queries against
the same queries on the input corpus (:mod:`dpbench.telemetry.synthesis`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dpbench.data.splits import DatasetSplits
from dpbench.telemetry.simulator import simulate
from dpbench.telemetry.synthesis import synthesize_and_score
from dpbench.telemetry.wide_table import build_wide_table

log = logging.getLogger("dpbench")


@dataclass(frozen=True)
class TelemetrySplits(DatasetSplits):
    """Wide rows of a telemetry corpus, with where the corpus lives (the utility reference)."""

    tables_dir: Path = Path()
    n_devices: int = 0

    def utility(self, model: torch.nn.Module, run_dir: Path, seed: int) -> dict:
        """Synthesize ``n_devices`` devices into ``run_dir/synthetic/`` and score the queries."""
        utility = synthesize_and_score(model, self.n_devices, self.tables_dir, Path(run_dir) / "synthetic", seed)
        log.info("synthetic data: %s (%.0f s)", utility["headline"], utility["seconds"])
        return utility


def load_telemetry(path: str | None = None, devices: int = 20_000, simulation_seed: int = 0,
                   root: str = "data_root", test_fraction: float = 0.05, split_seed: int = 0) -> TelemetrySplits:
    """The wide table of the tables in ``path``, or of ``devices`` simulated devices cached under ``root``."""
    if path is not None:
        tables_dir = Path(path).expanduser()
    else:
        tables_dir = Path(root).expanduser() / "telemetry" / f"sim_{devices}_seed{simulation_seed}"
        if not (tables_dir / "system_web_cat_pivot_duration.parquet").exists():
            log.info("simulating %d telemetry devices into %s", devices, tables_dir)
            simulate(devices, tables_dir, simulation_seed)
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
    )
