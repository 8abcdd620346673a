"""Reference points to report beside any method: trivial baselines and the halves noise floor.

The keys-and-counts baseline (the trivial baseline) answers each query knowing the
reference answer's group keys and its counts of devices and rows exactly
(``QuerySpec.counts``), and one number per other column, never the data:

* aggregate and histogram -- every group gets the mean over groups of each value
  column (a histogram's bin shares too, so equal shares), so only between-group
  structure is missing;
* distribution -- equal shares for every category;
* categorical ranking -- the most common top item everywhere ("chrome everywhere");
* row-level -- the reference's rows (so its row count), each metric column set to
  its mean and each descriptor column to its most common value.

What a method scores above it (:func:`margins`), on values only above all, is what
it knows about the data beyond keys and counts.

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

from dpbench.telemetry.benchmark_queries import (
    AGGREGATE,
    BENCHMARK,
    DISTRIBUTION,
    HISTOGRAM,
    RANKING_CATEGORICAL,
    ROW_LEVEL,
    QuerySpec,
)
from dpbench.telemetry.query_runner import run_queries
from dpbench.telemetry.scoring import Headline, QueryScore, score_answers


def trivial_answer(spec: QuerySpec, reference: pd.DataFrame) -> pd.DataFrame:
    """The keys-and-counts baseline's answer to a query."""
    answer = reference[list(spec.keys)].copy()
    if spec.kind in (AGGREGATE, HISTOGRAM, ROW_LEVEL):
        for column in spec.metrics + spec.shares:
            values = pd.to_numeric(reference[column], errors="coerce")
            answer[column] = values if column in spec.counts else values.mean()
        for column in spec.categorical:
            answer[column] = reference[column].mode().iloc[0]
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
                            queries: tuple[QuerySpec, ...] = BENCHMARK) -> list[QueryScore]:
    """Scores of the trivial baselines against the reference answers."""
    answers = {spec.name: trivial_answer(spec, references[spec.name]) for spec in queries
               if references.get(spec.name) is not None and not references[spec.name].empty}
    return score_answers(references, answers, queries)


def halves_noise_floor(tables_dir: Path | str, queries: tuple[QuerySpec, ...] = BENCHMARK) -> list[QueryScore]:
    """Scores of half 1 of the devices against half 0 of the same tables."""
    return score_answers(run_queries(tables_dir, queries, half=0), run_queries(tables_dir, queries, half=1), queries)


BASELINE, HALVES = "keys_and_counts", "halves"
"""Names of the two reference points in reports and in ``summary.json["utility"]``."""


def margins(scores: list[QueryScore], reference_points: dict[str, list[QueryScore]]) -> dict[str, dict]:
    """Each reference point's headline and the candidate's margin over it (candidate minus reference point)."""
    candidate = Headline.of(scores)
    return {name: {"headline": Headline.of(points).as_dict(), "margin": candidate.margin_over(Headline.of(points))}
            for name, points in reference_points.items()}


def format_margins(scores: list[QueryScore], reference_points: dict[str, list[QueryScore]]) -> str:
    """One line per reference point: its headline and the candidate's margin over it."""
    lines = []
    for name, entry in margins(scores, reference_points).items():
        m = entry["margin"]
        lines.append(f"margin over {name} ({Headline(**entry['headline'])}): {m['queries_passed']:+d} queries, "
                     f"{m['mean_score']:+.3f} mean score; on values only {m['value_queries_passed']:+d} queries, "
                     f"{m['value_mean_score']:+.3f}")
    return "\n".join(lines)
