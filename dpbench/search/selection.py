"""Selection: the trial with the best noised validation score, the only one a search releases.

The choice reads nothing but the trials' released scores (each a Gaussian release in its trial's
ledger), so it is post-processing of private outputs; a trial that failed or did not finish counts as
the worst score. The test accuracy of the selected trial is the search's reported result; the test set
plays no part in the choice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dpbench.errors import DpbenchError
from dpbench.search.plan import SearchPlan

RESULT_FILE = "result.json"


def trial_summaries(directory: Path) -> dict[str, dict]:
    """Finished trials' summaries under ``directory/runs``, by trial id."""
    found = {}
    for path in sorted((directory / "runs").glob("*/summary.json")):
        summary = json.loads(path.read_text())
        trial = summary.get("trial")
        if trial is not None:
            found[str(trial)] = {**summary, "run_dir": str(path.parent)}
    return found


class SearchMismatchError(DpbenchError):
    """A finished trial was calibrated for another search than the plan's."""


def check_trial_law(trial: str, summary: dict, plan: SearchPlan) -> None:
    """A private search's trial must have been calibrated for the plan's law of K: its tuning bound is the
    search's only if every trial's is."""
    search = summary.get("search")
    if plan.tune != "private" or search is None:
        return
    claimed = (float(search.get("trials_mean", math.nan)), float(search.get("trials_shape", math.nan)))
    if claimed != (float(plan.trials_mean), float(plan.trials_shape)):
        raise SearchMismatchError(
            f"trial {trial} ({summary.get('run_dir')}) was calibrated for a search of K with mean {claimed[0]:g} and "
            f"shape {claimed[1]:g}, but the plan drew K from mean {plan.trials_mean:g}, shape {plan.trials_shape:g}: "
            "its epsilon is not the search's. Remove that run directory and launch the search again (it re-runs "
            "the trial), and keep tune.* out of search spaces"
        )


def select_best(directory: Path, plan: SearchPlan) -> dict[str, Any]:
    """The released trial (or None if none finished) and how many of the planned trials finished. Every
    finished trial must have been calibrated for the plan's law of K (:func:`check_trial_law`)."""
    summaries = trial_summaries(directory)
    candidates = []
    for index, overrides in enumerate(plan.trials):
        summary = summaries.get(plan.trial_id(index))
        if summary is not None:
            check_trial_law(plan.trial_id(index), summary, plan)
        if summary is not None and math.isfinite(summary.get("validation_score", -math.inf)):
            candidates.append((summary["validation_score"], index, overrides, summary))
    if not candidates:
        return {"released": None, "trials_finished": 0}
    score, index, overrides, summary = max(candidates, key=lambda c: (c[0], -c[1]))
    epsilon, verdict = search_bound([c[3] for c in candidates], summary)
    return {
        "released": {
            "trial": plan.trial_id(index),
            "overrides": overrides,
            "validation_score": score,
            "final_accuracy": summary.get("final_accuracy"),
            "epsilon_search": epsilon,
            "epsilon_trial": summary.get("epsilon"),
            "verdict": verdict,
            "run_dir": summary["run_dir"],
        },
        "trials_finished": len(candidates),
    }


def search_bound(finished: list[dict], selected: dict) -> tuple[float | None, str | None]:
    """The search's ε and verdict. The tuning bound (Papernot & Steinke) holds only if *every* trial ran within
    the reference curve, not just the selected one: a trial whose plugin was measured below its claim (a tenth red
    team's was ``VIOLATION`` at ε 27.4, its search reported 2.976) leaves the search unbounded (ε inf), and its
    verdict is the search's."""
    epsilon = selected.get("epsilon_search")
    verdict = selected.get("verdict")
    for summary in finished:
        if summary.get("epsilon_search") is None or not math.isfinite(summary["epsilon_search"]):
            epsilon = math.inf if summary.get("search") is not None else epsilon
        other = str(summary.get("verdict") or "")
        if summary is not selected and other.startswith(("VIOLATION", "LEAK")):
            verdict = f"{other.split()[0]} (in another trial of the search)"
    return epsilon, verdict
