"""Score query results against reference answers with the capstone's rules (SPEC, "Scoring").

Per query kind:

* aggregate -- Jaccard overlap of the group keys (pass >= 0.5), and for each metric
  column the median relative error over shared groups (pass <= 0.25). Groups
  where either answer is missing (NULL) are skipped for that column.
* histogram -- total variation distance of the count shares over the union of
  bins (pass <= 0.15), and the median relative error of each metric column over
  shared bins (pass <= 0.25).
* distribution -- total variation distance of each share column, normalised to
  sum to one over the union of categories (pass <= 0.15).
* ranking_categorical -- share of reference keys whose top item is among the
  candidate's top items for that key (ties kept; pass >= 0.5).
* row_level -- relative error of the row count (pass <= 0.5), total variation
  distance of each descriptor column (pass <= 0.2) and relative error of each
  metric column's mean (pass <= 0.5).

A query's score is the share of its metrics that pass; it passes when at least
half pass. Relative error is |candidate - reference| / |reference|; it is 0 when
both are 0 and infinite when only the reference is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dpbench.telemetry.workload import (
    AGGREGATE,
    DISTRIBUTION,
    HISTOGRAM,
    RANKING_CATEGORICAL,
    ROW_LEVEL,
    WORKLOAD,
    QuerySpec,
)

JACCARD_PASS = 0.5
RELATIVE_ERROR_PASS = 0.25
TVD_PASS = 0.15
TOP_ITEM_PASS = 0.5
ROW_COUNT_ERROR_PASS = 0.5
ROW_TVD_PASS = 0.2
ROW_MEAN_ERROR_PASS = 0.5
QUERY_PASS = 0.5


@dataclass(frozen=True)
class MetricScore:
    """One metric of one query."""

    column: str
    measure: str
    value: float
    threshold: float
    higher_is_better: bool
    detail: str = ""

    @property
    def passed(self) -> bool:
        if np.isnan(self.value):
            return False
        return self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold


@dataclass
class QueryScore:
    """The scores of one query; ``error`` says why it could not be scored."""

    query: str
    kind: str
    metrics: list[MetricScore] = field(default_factory=list)
    error: str = ""

    @property
    def n_metrics(self) -> int:
        return len(self.metrics)

    @property
    def n_passed(self) -> int:
        return sum(m.passed for m in self.metrics)

    @property
    def score(self) -> float:
        return self.n_passed / self.n_metrics if self.metrics and not self.error else float("nan")

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.metrics) and self.score >= QUERY_PASS


def relative_error(reference: float, candidate: float) -> float:
    """|candidate - reference| / |reference| (0 if both are 0, inf if only the reference is)."""
    if reference == 0:
        return 0.0 if candidate == 0 else float("inf")
    return abs(candidate - reference) / abs(reference)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation distance of two non-negative weight vectors after normalising each to one."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.sum() > 0:
        p = p / p.sum()
    if q.sum() > 0:
        q = q / q.sum()
    return float(0.5 * np.abs(p - q).sum())


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (1 for two empty sets)."""
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def _normalise_key(value: object) -> object:
    """Keys compare as numbers when they parse as numbers (8 == 8.0), else as text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _keyed(frame: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    index = pd.MultiIndex.from_arrays([frame[k].map(_normalise_key) for k in keys], names=list(keys))
    return frame.set_index(index)


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], role: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{role} answer lacks columns {missing} (has {list(frame.columns)})")


def _median_relative_errors(spec: QuerySpec, ref: pd.DataFrame, cand: pd.DataFrame,
                            shared: list) -> list[MetricScore]:
    scores = []
    for column in spec.metrics:
        errors = [relative_error(float(r), float(c))
                  for r, c in zip(ref.loc[shared, column], cand.loc[shared, column])
                  if not (pd.isna(r) or pd.isna(c))]
        value = float(np.median(errors)) if errors else float("inf")
        scores.append(MetricScore(column, "median_relative_error", value, RELATIVE_ERROR_PASS, False,
                                  f"{len(errors)} groups compared"))
    return scores


def _score_aggregate(spec: QuerySpec, ref: pd.DataFrame, cand: pd.DataFrame) -> list[MetricScore]:
    ref, cand = _keyed(ref, spec.keys), _keyed(cand, spec.keys)
    ref_keys, cand_keys = set(ref.index), set(cand.index)
    shared = sorted(ref_keys & cand_keys, key=str)
    coverage = MetricScore("group_keys", "jaccard", jaccard(ref_keys, cand_keys), JACCARD_PASS, True,
                           f"{len(shared)} of {len(ref_keys)} reference groups present, {len(cand_keys)} candidate groups")
    return [coverage, *_median_relative_errors(spec, ref, cand, shared)]


def _aligned_shares(ref: pd.DataFrame, cand: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    union = sorted(set(ref.index) | set(cand.index), key=str)
    p = ref[column].reindex(union).fillna(0.0).to_numpy(dtype=float)
    q = cand[column].reindex(union).fillna(0.0).to_numpy(dtype=float)
    return p, q


def _score_histogram(spec: QuerySpec, ref: pd.DataFrame, cand: pd.DataFrame) -> list[MetricScore]:
    ref, cand = _keyed(ref, spec.keys), _keyed(cand, spec.keys)
    scores = [MetricScore(column, "total_variation", total_variation(*_aligned_shares(ref, cand, column)),
                          TVD_PASS, False, f"{len(set(ref.index) | set(cand.index))} bins")
              for column in spec.shares]
    shared = sorted(set(ref.index) & set(cand.index), key=str)
    return scores + _median_relative_errors(spec, ref, cand, shared)


def _score_distribution(spec: QuerySpec, ref: pd.DataFrame, cand: pd.DataFrame) -> list[MetricScore]:
    ref, cand = _keyed(ref, spec.keys), _keyed(cand, spec.keys)
    return [MetricScore(column, "total_variation", total_variation(*_aligned_shares(ref, cand, column)),
                        TVD_PASS, False, f"{len(set(ref.index) | set(cand.index))} categories")
            for column in spec.shares]


def _score_ranking_categorical(spec: QuerySpec, ref: pd.DataFrame, cand: pd.DataFrame) -> list[MetricScore]:
    (group,), (item,) = spec.keys, spec.metrics
    ref_top = ref.groupby(group)[item].apply(set).to_dict()
    cand_top = cand.groupby(group)[item].apply(set).to_dict()
    matches = sum(bool(items & cand_top.get(key, set())) for key, items in ref_top.items())
    value = matches / len(ref_top) if ref_top else float("nan")
    return [MetricScore(item, "top_item_accuracy", value, TOP_ITEM_PASS, True,
                        f"{matches} of {len(ref_top)} reference {group} values matched")]


def _score_row_level(spec: QuerySpec, ref: pd.DataFrame, cand: pd.DataFrame) -> list[MetricScore]:
    scores = [MetricScore("row_count", "relative_error", relative_error(len(ref), len(cand)), ROW_COUNT_ERROR_PASS,
                          False, f"reference {len(ref)} rows, candidate {len(cand)}")]
    for column in spec.categorical:
        p = ref[column].astype(str).value_counts()
        q = cand[column].astype(str).value_counts()
        union = sorted(set(p.index) | set(q.index))
        scores.append(MetricScore(column, "total_variation",
                                  total_variation(p.reindex(union, fill_value=0), q.reindex(union, fill_value=0)),
                                  ROW_TVD_PASS, False, f"{len(union)} values"))
    for column in spec.metrics:
        scores.append(MetricScore(f"mean_{column}", "relative_error",
                                  relative_error(float(ref[column].mean()), float(cand[column].mean())),
                                  ROW_MEAN_ERROR_PASS, False))
    return scores


_SCORERS = {
    AGGREGATE: _score_aggregate,
    HISTOGRAM: _score_histogram,
    DISTRIBUTION: _score_distribution,
    RANKING_CATEGORICAL: _score_ranking_categorical,
    ROW_LEVEL: _score_row_level,
}


def score_query(spec: QuerySpec, reference: pd.DataFrame | None, candidate: pd.DataFrame | None) -> QueryScore:
    """Score a candidate answer against a reference answer; a missing answer is reported, not raised."""
    result = QueryScore(spec.name, spec.kind)
    if reference is None:
        result.error = f"no reference answer ({spec.result_name}.csv) to score against"
        return result
    if candidate is None:
        result.error = f"no candidate answer ({spec.result_name}.csv)"
        return result
    needed = spec.keys + spec.metrics + spec.shares + spec.categorical
    _require_columns(reference, needed, f"{spec.name} reference")
    _require_columns(candidate, needed, f"{spec.name} candidate")
    result.metrics = _SCORERS[spec.kind](spec, reference, candidate)
    return result


def score_answers(references: dict[str, pd.DataFrame | None], candidates: dict[str, pd.DataFrame | None],
                  queries: tuple[QuerySpec, ...] = WORKLOAD) -> list[QueryScore]:
    """Score every query's candidate answer against its reference answer (both keyed by query name)."""
    return [score_query(q, references.get(q.name), candidates.get(q.name)) for q in queries]


def summary_table(scores: list[QueryScore]) -> pd.DataFrame:
    """One row per query: pass, score, metric counts and every metric's value."""
    rows = []
    for s in scores:
        rows.append({
            "query": s.query,
            "kind": s.kind,
            "passed": s.passed,
            "score": s.score,
            "n_passed": s.n_passed,
            "n_metrics": s.n_metrics,
            "metrics": "; ".join(f"{m.column}={m.value:.3g}{'' if m.passed else '(fail)'}" for m in s.metrics)
                       or s.error,
        })
    return pd.DataFrame(rows)


def format_scores(title: str, scores: list[QueryScore]) -> str:
    """A printable report: the per-query table, every metric of every query, and the headline."""
    table = summary_table(scores)
    lines = [f"== {title}", table.drop(columns="metrics").to_string(index=False)]
    lines += [f"  {row.query}: {row.metrics}" for row in table.itertuples()]
    return "\n".join([*lines, headline(scores)])


def headline(scores: list[QueryScore]) -> str:
    """'k of n evaluable queries pass, mean score x' (queries without a reference are not evaluable)."""
    evaluable = [s for s in scores if not s.error]
    mean = np.mean([s.score for s in evaluable]) if evaluable else float("nan")
    return f"{sum(s.passed for s in evaluable)} of {len(evaluable)} evaluable queries pass, mean score {mean:.3f}"
