"""The files of one run directory and the shared results table, all written atomically.

- ``config.yaml``: the resolved configuration.
- ``metrics.jsonl``: one JSON object per finished epoch (rewritten whole after every epoch, so a
  killed run never leaves a half line or a duplicate).
- ``summary.json``: written once, when the run has finished (``wall_seconds``: the whole run;
  ``training_seconds``: its training epochs).
- ``checkpoint.pt``: see :mod:`dpbench.training.checkpoint`.
- ``error.txt``: the full traceback of a run that failed (removed when it later succeeds), see :mod:`dpbench.cli`.
- ``<results>/results.jsonl``: one row per finished run (and a ``status: failed`` row per failed one),
  appended under a file lock; read it with ``pandas.read_json(path, lines=True)``.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path


class RunFiles:
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.config = self.dir / "config.yaml"
        self.metrics = self.dir / "metrics.jsonl"
        self.summary = self.dir / "summary.json"
        self.checkpoint = self.dir / "checkpoint.pt"

    def write_metrics(self, epochs: list[dict]) -> None:
        write_atomic(self.metrics, "".join(json.dumps(row) + "\n" for row in epochs))

    def write_summary(self, summary: dict) -> None:
        write_atomic(self.summary, json.dumps(summary, indent=2) + "\n")

    def read_summary(self) -> dict:
        return json.loads(self.summary.read_text())


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def append_result_row(table: Path, row: dict) -> None:
    """Append one JSON line to the results table; a lock keeps parallel runs from interleaving."""
    table.parent.mkdir(parents=True, exist_ok=True)
    with open(table, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)
