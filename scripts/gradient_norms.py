"""Where a finished run's clipping bound sits among its model's per-example gradient norms.

    python scripts/gradient_norms.py RUN_DIR [RUN_DIR ...] [--examples 20000] [--data-root DIR]

Loads each run's config and final checkpoint (the parameters of its last step), computes the per-example gradient
norms of the first ``--examples`` training examples with the run's own engine, and prints their quantiles, the
share that is exactly 0, the bound S of the run's last step (from its ledger) and the share of examples that S
clips. It tells, e.g., whether C clips every example (C then only scales the step: see
tests/mechanisms/test_adaptive.py) or whether an adaptive threshold followed a quantile of norms to 0.

The norms are computed from the training data without noise: this is the operator's diagnostic, for benchmarks on
public data, not a release.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dpbench.engine.choice import build_engine
from dpbench.training.checkpoint import read_checkpoint

QUANTILES = (0.1, 0.5, 0.9)


def norms_and_bound(run_dir: Path, examples: int, data_root: str | None = None) -> tuple[np.ndarray, float]:
    """The per-example gradient norms of the run's final parameters on its first ``examples`` training examples,
    and the sensitivity of its last step."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    if data_root is not None:
        cfg.dataset.root = data_root
    data = instantiate(cfg.dataset)
    model = instantiate(cfg.model)
    payload = read_checkpoint(run_dir / "checkpoint.pt")
    model.load_state_dict(payload["model"])
    engine = build_engine(cfg.train.engine, model, data.loss(model), None, data.test_features, data.test_labels)
    features, labels = data.train_features[:examples], data.train_labels[:examples]
    chunk = int(cfg.train.physical_batch_size)
    squared = [engine.per_sample_gradients(features[i:i + chunk], labels[i:i + chunk]).squared_norms().sum(dim=1)
               for i in range(0, len(labels), chunk)]
    return torch.cat(squared).sqrt().numpy(), float(payload["state"]["ledger"][-1]["sensitivity"])


def describe(norms: np.ndarray, bound: float) -> str:
    quantiles = ", ".join(f"q{q:g} {np.quantile(norms, q):.3g}" for q in QUANTILES)
    return (f"{len(norms)} examples: norms {quantiles}; exactly 0: {np.mean(norms == 0):.1%}; "
            f"last step's bound S = {bound:.3g} clips {np.mean(norms > bound):.1%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with config.yaml and checkpoint.pt)")
    parser.add_argument("--examples", type=int, default=20000, help="training examples to measure (default 20000)")
    parser.add_argument("--data-root", default=None, help="dataset root, if not the one the run recorded")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(f"{run}: {describe(*norms_and_bound(run, args.examples, args.data_root))}")


if __name__ == "__main__":
    main()
