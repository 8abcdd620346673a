"""Reading finished runs back: the results table and each run's per-epoch metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from dpbench.reporting.configuration import (
    MECHANISM_CLASS,
    SEARCH,
    TARGET_EPSILON,
    TRIAL,
    TUNING,
    config_id,
    defining,
    flatten,
)
from dpbench.reporting.run_files import RunFiles
from dpbench.search.tuning_record import PRIVATE_SEARCH, UNTUNED

LINE = "_line"  # a row's index among the results table's lines, while it is read
RUN_KEYS = ["dataset", "mechanism", "target_epsilon", "seed", "config_id", "sweep_id"]
# Columns of a results row that stand in for the config when a run directory no longer holds one.
ROW_CONFIG_KEYS = {
    "dataset": "dataset.name", "model": "model",
    "mechanism": "mechanism.name", "max_grad_norm": "mechanism.max_grad_norm",
    "target_epsilon": TARGET_EPSILON, "delta": "privacy.target_delta", "epochs": "train.epochs", "lr": "train.lr",
    "expected_batch_size": "train.batch_size",
}


# How a result was tuned (dpbench/search/tuning_record.py); absent (None, "untuned") for an untuned run.
TUNING_COLUMNS = ["tuning", "tuned_on", "search_id", "searched", "trials_mean", "trials_shape", "trials_run",
                  "epsilon_trial"]


class NoResultsError(FileNotFoundError):
    """No finished run was found where the report looked."""


def load_results(results_dir: Path) -> pd.DataFrame:
    """One row per finished run (the latest row of each run directory), from ``results.jsonl``; a relative
    ``run_dir`` (a published folder's, :mod:`dpbench.reporting.publish`) is read relative to ``results_dir``."""
    rows = _finished_rows(Path(results_dir)).drop(columns=LINE)
    rows["run_dir"] = [str(Path(results_dir) / run_dir) if not Path(run_dir).is_absolute() else run_dir
                       for run_dir in rows["run_dir"]]
    rows = rows.assign(**{column: rows.get(column, None) for column in TUNING_COLUMNS})
    rows["tuning"] = rows["tuning"].fillna(UNTUNED)
    # Rows written before the verdict was recorded: a structured run's noise is the kernel's own.
    kernel_verdict = rows["contract"].map({"structured": "VERIFIED"})
    rows["verdict"] = rows["verdict"].fillna(kernel_verdict) if "verdict" in rows else kernel_verdict
    return with_configuration(rows)


def publishable_rows(results_dir: Path) -> list[dict]:
    """The rows :func:`load_results` reads, exactly as written (JSON objects, before pandas types them): finished
    runs, no audited run, no search trial, the latest row of each run directory."""
    table = Path(results_dir) / "results.jsonl"
    written = [json.loads(line) for line in table.read_text().splitlines() if line.strip()]
    return [written[line] for line in _finished_rows(Path(results_dir))[LINE]]


def _finished_rows(results_dir: Path) -> pd.DataFrame:
    """The results table's rows that :func:`load_results` reads, each with its ``LINE`` (index among the table's
    non-blank lines)."""
    table = results_dir / "results.jsonl"
    if not table.exists():
        raise NoResultsError(
            f"no results table at {table}: run `python -m dpbench ...` first, or pass the results folder "
            "(the one holding results.jsonl) to `python -m dpbench.report`"
        )
    rows = pd.read_json(table, lines=True)
    if rows.empty:
        raise NoResultsError(f"{table} holds no finished run yet")
    rows[LINE] = range(len(rows))
    if "status" in rows:
        rows = rows[rows["status"].fillna("finished") == "finished"]
    if "audit" in rows:  # audited runs train on canaries too: a different dataset, not a benchmark entry
        rows = rows[rows["audit"].isna()]
    rows = rows.drop_duplicates(subset="run_dir", keep="last").reset_index(drop=True)
    return _without_search_trials(rows, table)


def _without_search_trials(rows: pd.DataFrame, table: Path) -> pd.DataFrame:
    """The rows less a search's trials: only the model a search selected may be published (its row, written
    by the search into the results table it was started with, has ``tuning``); the trials' rows live in the
    search's own directory, with K, and are the operator's."""
    if "trial" not in rows:
        return rows
    tuned = rows["tuning"] == PRIVATE_SEARCH if "tuning" in rows else False
    released = rows[rows["trial"].isna() | tuned].reset_index(drop=True)
    if released.empty:
        raise NoResultsError(
            f"{table} holds only the trials of a search, which are not for publication (their number and scores "
            "would void the tuning bound): report the results folder the search was started with, where it "
            "wrote the row of the model it selected"
        )
    return released


def with_configuration(rows: pd.DataFrame) -> pd.DataFrame:
    """Adds each run's defining config (``config``, flat dotted keys) and its ids: ``config_id`` (everything but
    the seed and execution-only keys), ``context_id`` (the same without the mechanism group: runs a mechanism
    comparison may pair) and ``sweep_id`` (without the target ε: points of one ε sweep)."""
    configs = [_publishable(run_configuration(row), row) for _, row in rows.iterrows()]
    rows = rows.assign(config=configs)
    rows[MECHANISM_CLASS] = [config.get(MECHANISM_CLASS) for config in configs]
    rows["config_id"] = [config_id(config) for config in configs]
    rows["context_id"] = [config_id(config, without=["mechanism"]) for config in configs]
    rows["sweep_id"] = [config_id(config, without=[TARGET_EPSILON]) for config in configs]
    return rows


def run_configuration(row: pd.Series) -> dict:
    """The run's defining config: from its summary.json (or config.yaml), else the config columns of its row;
    plus the mechanism class that ran, from the row or the summary."""
    files = RunFiles(Path(row["run_dir"]))
    summary = files.read_summary() if files.summary.exists() else {}
    if "config" in summary:
        config = flatten(summary["config"])
    elif files.config.exists():
        config = flatten(OmegaConf.to_container(OmegaConf.load(files.config), resolve=True))
    else:
        config = {name: _plain(row[column]) for column, name in ROW_CONFIG_KEYS.items() if column in row.index}
    ran = _plain(row.get(MECHANISM_CLASS)) or summary.get(MECHANISM_CLASS)
    if ran is not None:
        config[MECHANISM_CLASS] = ran
    return defining(config)


def _publishable(config: dict, row: pd.Series) -> dict:
    """A run's configuration as the report may publish it. A tuned result's also holds how it was tuned and by
    which search, and not which trial the search selected (the trial's index bounds K from below, and K is
    secret; the config id, a hash, must not encode it either). An untuned run's is unchanged."""
    tuning = _plain(row.get("tuning"))
    if tuning in (None, UNTUNED):
        return config
    search = _plain(row.get("search_id"))
    released = {key: value for key, value in config.items() if key != TRIAL}
    return released | {TUNING: tuning} | ({SEARCH: search} if search is not None else {})


def _plain(value):
    """A pandas cell as a JSON value: NaN (absent) becomes None, numpy scalars Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


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
