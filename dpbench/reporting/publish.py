"""``python -m dpbench.report RESULTS --publish DIR``: copy what of a results folder may be published.

A results folder is the operator's: beside the released models it holds a private search's K (``trials_run``,
``trials_finished``), its trials (their rows, directories and scores) and the index of the trial it selected
(``t3`` bounds K from below), and every run's checkpoint (the model itself, whose noise is reproducible from the
seed). Publishing any of them voids the tuning bound or more. DIR gets only this, for each finished, non-audit
run the report would show:

- a row in ``DIR/results.jsonl``: the results row without K or the trial's index, its ``run_dir`` relative to DIR;
- ``DIR/runs/<name>/summary.json``: the run's summary without its trial index or its path, the config without
  ``tune.trial``. ``<name>`` is a hash of the search (its ``search_id``, published anyway) for a search's released
  model, never of the trial's directory: that path names the trial, and the rest of it can be rebuilt from the
  published config, so a hash of it could be matched against t0, t1, ... to recover the index. An untuned run's
  ``<name>`` is a hash of its original directory.

A private search planned from a fixed ``tune.seed`` is refused (nothing is published): its published config
would carry the seed, from which K, every trial and the selected index can be drawn again.

DIR is then a results folder like any other: ``python -m dpbench.report DIR`` gives the same leaderboards, tuned
pipelines included. Publishing into a folder that already holds results adds the runs it does not hold yet (runs
are told apart by their name), so a benchmark table can be collected over several machines or sessions and kept
with the docs that quote it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pandas as pd

from dpbench.errors import DpbenchError
from dpbench.reporting.results_table import publishable_rows
from dpbench.reporting.run_files import RunFiles, append_result_row
from dpbench.search.tuning_record import PRIVATE_SEARCH

# What a private search's released row and summary must not carry: K and the selected trial's index.
SEARCH_SECRETS = ("trials_run", "trials_finished", "trial")
RUNS = "runs"


def publish(results_dir: Path, out: Path) -> list[str]:
    """Copy the publishable part of ``results_dir`` into ``out`` (adding to what is there); returns the names of
    the runs added."""
    rows = publishable_rows(Path(results_dir))
    summaries = [_summary(row) for row in rows]
    seeded = sorted({str(row["search_id"]) for row, summary in zip(rows, summaries)
                     if row.get("tuning") == PRIVATE_SEARCH and _seeded(row, summary)})
    if seeded:
        raise PublishError(
            f"{len(seeded)} private search(es) drew K and their trials from a fixed tune.seed, or have no readable "
            f"summary to say they did not (e.g. {seeded[0]}): "
            "anyone with the seed, which the published config carries, redraws K, every trial and the selected "
            "index, which voids the tuning bound; run the search again without tune.seed (K is then drawn from OS "
            "entropy), or publish a results folder without it. Nothing was published"
        )
    table = Path(out) / "results.jsonl"
    held = _published_names(table)
    added = []
    for row, summary in zip(rows, summaries):
        tuned = row.get("tuning") == PRIVATE_SEARCH
        name = _name(f"search:{row['search_id']}" if tuned else f"run:{row['run_dir']}")
        if name in held:
            continue
        target = RunFiles(Path(out) / RUNS / name)
        target.write_summary(_without_secrets(summary, tuned) | {"run_dir": f"{RUNS}/{name}"})
        append_result_row(table, _without_secrets(row, tuned) | {"run_dir": f"{RUNS}/{name}"})
        held.add(name)
        added.append(name)
    return added


class PublishError(DpbenchError):
    """A results folder holds something that may not be published."""


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    source = RunFiles(Path(row["run_dir"]))
    return source.read_summary() if source.summary.exists() else {}


def _seeded(row: dict[str, Any], summary: dict[str, Any]) -> bool:
    """Whether a private search's plan was drawn from a fixed ``tune.seed``: its summary says so, its id (its
    overrides) names one, or its summary cannot be read (a moved folder: a tenth red team published a seeded
    search that way), so nothing says it was not."""
    tune = (summary.get("config") or {}).get("tune")
    if not isinstance(tune, dict):
        return True
    return tune.get("seed") is not None or re.search(r"(^|,)\+?tune\.seed=(?!null(,|$))", str(row["search_id"])) is not None


def _name(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _published_names(table: Path) -> set[str]:
    if not table.exists():
        return set()
    return {Path(row["run_dir"]).name for row in pd.read_json(table, lines=True).to_dict("records")}


def _without_secrets(record: dict[str, Any], private_search: bool) -> dict[str, Any]:
    """A row or summary without the run's own path and, for a private search's released model, without K and
    the selected trial's index (also inside its config)."""
    kept = {key: value for key, value in record.items() if key != "run_dir"}
    if not private_search:
        return kept
    kept = {key: value for key, value in kept.items() if key not in SEARCH_SECRETS}
    if isinstance(kept.get("config"), dict) and isinstance(kept["config"].get("tune"), dict):
        kept["config"] = kept["config"] | {
            "tune": {key: value for key, value in kept["config"]["tune"].items() if key != "trial"}}
    return kept
