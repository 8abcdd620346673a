"""Reference points to report beside any method: trivial baselines and the halves noise floor.

Trivial baselines answer each query knowing only the published answer's group
keys and one number per column, never the data:

* aggregate and histogram -- every group gets the mean over groups of each column,
  so only between-group structure is missing;
* distribution -- equal shares for every category;
* categorical ranking -- the most common top item everywhere ("chrome everywhere").

Row-level output has no trivial baseline.

The noise floor scores one random half of the devices against the other half
(every table filtered to the same guids), so it measures how much the scoring
rules move between two samples of the same population. The real corpus is not
available to dpbench, so this runs on whichever tables it is given; on the
simulated corpus it is the simulator's floor, not the real data's (the capstone
reports 16 of 21 queries passing on real halves).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dpbench.telemetry.query_runner import run_queries
from dpbench.telemetry.scoring import QueryScore, score_answers, score_query
from dpbench.telemetry.workload import (
    AGGREGATE,
    DISTRIBUTION,
    HISTOGRAM,
    RANKING_CATEGORICAL,
    WORKLOAD,
    QuerySpec,
)


def trivial_answer(spec: QuerySpec, reference: pd.DataFrame) -> pd.DataFrame | None:
    """The trivial baseline's answer to a query, or None where none is defined (row-level)."""
    answer = reference[list(spec.keys)].copy()
    if spec.kind in (AGGREGATE, HISTOGRAM):
        for column in spec.metrics + spec.shares:
            answer[column] = pd.to_numeric(reference[column], errors="coerce").mean()
        return answer
    if spec.kind == DISTRIBUTION:
        for column in spec.shares:
            answer[column] = 100.0 / len(reference)
        return answer
    if spec.kind == RANKING_CATEGORICAL:
        (item,) = spec.metrics
        answer[item] = reference[item].mode().iloc[0]
        return answer
    return None


def trivial_baseline_scores(references: dict[str, pd.DataFrame | None],
                            queries: tuple[QuerySpec, ...] = WORKLOAD) -> list[QueryScore]:
    """Scores of the trivial baselines against the reference answers."""
    scores = []
    for spec in queries:
        reference = references.get(spec.name)
        candidate = trivial_answer(spec, reference) if reference is not None else None
        score = score_query(spec, reference, candidate)
        if reference is not None and candidate is None:
            score.error = "no trivial baseline for row-level output"
        scores.append(score)
    return scores


def halves_noise_floor(tables_dir: Path | str, queries: tuple[QuerySpec, ...] = WORKLOAD) -> list[QueryScore]:
    """Scores of half 1 of the devices against half 0 of the same tables."""
    return score_answers(run_queries(tables_dir, queries, half=0), run_queries(tables_dir, queries, half=1), queries)
