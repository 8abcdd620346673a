"""Reading finished runs back: the results table and each run's per-epoch metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RUN_KEYS = ["dataset", "mechanism", "target_epsilon", "seed"]


class NoResultsError(FileNotFoundError):
    """No finished run was found where the report looked."""


def load_results(results_dir: Path) -> pd.DataFrame:
    """One row per finished run (the latest row of each run directory), from ``results.jsonl``."""
    table = Path(results_dir) / "results.jsonl"
    if not table.exists():
        raise NoResultsError(
            f"no results table at {table}: run `python -m dpbench ...` first, or pass the results folder "
            "(the one holding results.jsonl) to `python -m dpbench.report`"
        )
    rows = pd.read_json(table, lines=True)
    if rows.empty:
        raise NoResultsError(f"{table} holds no finished run yet")
    if "status" in rows:
        rows = rows[rows["status"].fillna("finished") == "finished"]
    if "audit" in rows:  # audited runs train on canaries too: a different dataset, not a benchmark entry
        rows = rows[rows["audit"].isna()]
    rows = rows.drop_duplicates(subset="run_dir", keep="last").reset_index(drop=True)
    # Rows written before the verdict was recorded: a structured run's noise is the kernel's own.
    kernel_verdict = rows["contract"].map({"structured": "VERIFIED"})
    rows["verdict"] = rows["verdict"].fillna(kernel_verdict) if "verdict" in rows else kernel_verdict
    return rows


def load_epoch_metrics(results: pd.DataFrame) -> pd.DataFrame:
    """Long table of per-epoch metrics of every run in ``results``, with the run's keys."""
    frames = []
    for _, run in results.iterrows():
        path = Path(run["run_dir"]) / "metrics.jsonl"
        if not path.exists():
            continue
        epochs = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
        for key in RUN_KEYS:
            epochs[key] = run[key]
        frames.append(epochs)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RUN_KEYS + ["epoch"])
