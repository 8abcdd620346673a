"""Score query results against reference answers with the capstone's rules (SPEC, "Scoring").

Per query kind:

* aggregate -- Jaccard overlap of the group keys (pass >= 0.5), and for each metric
  column the median relative error over shared groups (pass <= 0.25). A group
  whose reference value is missing (NULL) is skipped for that column; a group
  where only the candidate's value is missing counts as an infinite error (the
  candidate did not answer it).
* histogram -- total variation distance of the count shares over the union of
  bins (pass <= 0.15), and the median relative error of each metric column over
  shared bins (pass <= 0.25).
* distribution -- total variation distance of each share column, normalised to
  sum to one over the union of categories (pass <= 0.15).
* ranking_categorical -- share of reference keys whose top item the candidate
  names as its top (ties kept on both sides: a key counts the share of the
  candidate's tied top items that are reference top items; pass >= 0.5).
* row_level -- the SPEC gives no rule for row-level output, so its own thresholds
  are used: relative error of the row count (pass <= 0.25), total variation
  distance of the distribution over rows of each descriptor the SPEC names (os,
  chassis, vendor, RAM, cores; pass <= 0.15) and relative error of each metric
  column's mean (pass <= 0.25).

A query's score is the share of its metrics that pass; it passes when at least
half pass. Relative error is |candidate - reference| / |reference|; it is 0 when
both are 0 and infinite when only the reference is 0.

Value-only scoring applies the same rule to the metrics about values alone:
key overlap, device and row counts (``QuerySpec.counts``) and a row-level
answer's row count are left out, because an answer that knows only the
reference's keys and counts gets them right (see :mod:`.baselines`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
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

JACCARD_PASS = 0.5
RELATIVE_ERROR_PASS = 0.25
TVD_PASS = 0.15
TOP_ITEM_PASS = 0.5
ROW_COUNT_ERROR_PASS = RELATIVE_ERROR_PASS
ROW_TVD_PASS = TVD_PASS
ROW_MEAN_ERROR_PASS = RELATIVE_ERROR_PASS
QUERY_PASS = 0.5
EMPTY_REFERENCE = "reference answer has no rows at this population size"


@dataclass(frozen=True)
class MetricScore:
    """One metric of one query."""

    column: str
    measure: str
    value: float
    threshold: float
    higher_is_better: bool
    detail: str = ""
    about_values: bool = True
    """False for key overlap and for counts of devices or rows (left out of value-only scoring)."""

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

    @property
    def value_metrics(self) -> list[MetricScore]:
        return [m for m in self.metrics if m.about_values]

    @property
    def value_score(self) -> float:
        """The share of value metrics that pass (NaN if the query has none or could not be scored)."""
        values = self.value_metrics
        return sum(m.passed for m in values) / len(values) if values and not self.error else float("nan")

    @property
    def value_passed(self) -> bool:
        return not self.error and bool(self.value_metrics) and self.value_score >= QUERY_PASS


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
    """Keys compare as numbers when they parse as numbers (8 == 8.0), else as text stripped and case-folded:
    synthetic output spells a group as the catalogue does ('Notebook'), a real corpus may not (' notebook')."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value).strip().casefold()


def _keyed(frame: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    index = pd.MultiIndex.from_arrays([frame[k].map(_normalise_key) for k in keys], names=list(keys))
    twice = index[index.duplicated() & ~frame.duplicated(list(keys)).to_numpy()]  # made equal by the normalising
    if len(twice):
        spellings = frame.loc[index.isin(twice[:1]), list(keys)].drop_duplicates().to_dict("records")
        raise ValueError(f"groups {spellings} differ only in case or surrounding spaces, so they cannot be told apart "
                         "when scoring: spell each value one way in the tables")
    return frame.set_index(index)


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], role: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{role} answer lacks columns {missing} (has {list(frame.columns)})")


def _median_relative_errors(spec: QuerySpec, ref: pd.DataFrame, cand: pd.DataFrame,
                            shared: list) -> list[MetricScore]:
    scores = []
    for column in spec.metrics:
        errors = [float("inf") if pd.isna(c) else relative_error(float(r), float(c))
                  for r, c in zip(ref.loc[shared, column], cand.loc[shared, column])
                  if not pd.isna(r)]
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


def _top_item_credit(reference_top: set, candidate_top: set) -> float:
    """The share of the candidate's (tied) top items that are reference top items: 1 for a match, 0 for a
    miss or a missing key, and 1/k for a k-way candidate tie that holds one reference top item, so that
    naming every item as tied for the top does not match every key."""
    return len(reference_top & candidate_top) / len(candidate_top) if candidate_top else 0.0


def _score_ranking_categorical(spec: QuerySpec, ref: pd.DataFrame, cand: pd.DataFrame) -> list[MetricScore]:
    (group,), (item,) = spec.keys, spec.metrics
    ref, cand = (frame[[group, item]].map(_normalise_key) for frame in (ref, cand))
    ref_top = ref.groupby(group)[item].apply(set).to_dict()
    cand_top = cand.groupby(group)[item].apply(set).to_dict()
    credit = {key: _top_item_credit(items, cand_top.get(key, set())) for key, items in ref_top.items()}
    matched = {key for key, c in credit.items() if c > 0}
    value = sum(credit.values()) / len(ref_top) if ref_top else float("nan")
    modal = ref[item].mode().iloc[0] if len(ref) else None
    unusual = {key for key, items in ref_top.items() if modal not in items}
    return [MetricScore(item, "top_item_accuracy", value, TOP_ITEM_PASS, True,
                        f"{len(matched)} of {len(ref_top)} reference {group} values matched; "
                        f"{len(matched & unusual)} of the {len(unusual)} whose top is not {modal!r}")]


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
    result.metrics = [replace(m, about_values=is_value_metric(spec, m))
                      for m in _SCORERS[spec.kind](spec, reference, candidate)]
    return result


def is_value_metric(spec: QuerySpec, metric: MetricScore) -> bool:
    """Whether ``metric`` is about values: not key overlap, not a count of devices or rows."""
    return metric.measure != "jaccard" and metric.column not in (*spec.counts, "row_count")


def score_answers(references: dict[str, pd.DataFrame | None], candidates: dict[str, pd.DataFrame | None],
                  queries: tuple[QuerySpec, ...] = BENCHMARK) -> list[QueryScore]:
    """Score every query's candidate answer against its reference answer (both keyed by query name).

    A reference answer with no rows (e.g. a HAVING > 100 devices threshold that no group reaches in a
    small corpus) cannot be scored: the query is reported as not evaluable, not as a pass of two empty
    answers."""
    scores = []
    for q in queries:
        reference = references.get(q.name)
        if reference is not None and reference.empty:
            scores.append(QueryScore(q.name, q.kind, error=EMPTY_REFERENCE))
        else:
            scores.append(score_query(q, reference, candidates.get(q.name)))
    return scores


def summary_table(scores: list[QueryScore]) -> pd.DataFrame:
    """One row per query: pass, score, metric counts and every metric's value."""
    rows = []
    for s in scores:
        rows.append({
            "query": s.query,
            "kind": s.kind,
            "passed": s.passed,
            "score": s.score,
            "value_passed": s.value_passed,
            "value_score": s.value_score,
            "n_passed": s.n_passed,
            "n_metrics": s.n_metrics,
            "metrics": "; ".join(f"{m.column}={m.value:.3g}{'' if m.passed else '(fail)'}"
                                 f"{'' if m.about_values else '[not a value]'}" for m in s.metrics) or s.error,
        })
    return pd.DataFrame(rows)


def format_scores(title: str, scores: list[QueryScore]) -> str:
    """A printable report: the per-query table, every metric of every query, and the headline."""
    table = summary_table(scores)
    lines = [f"== {title}", table.drop(columns="metrics").to_string(index=False)]
    lines += [f"  {row.query}: {row.metrics}" for row in table.itertuples()]
    return "\n".join([*lines, headline(scores)])


@dataclass(frozen=True)
class Headline:
    """Passes and mean score over the evaluable queries, on all metrics and on value metrics only."""

    queries_passed: int
    queries_evaluable: int
    mean_score: float
    value_queries_passed: int
    value_queries_evaluable: int
    value_mean_score: float

    @classmethod
    def of(cls, scores: list[QueryScore]) -> Headline:
        evaluable = [s for s in scores if not s.error]
        valued = [s for s in evaluable if s.value_metrics]
        return cls(sum(s.passed for s in evaluable), len(evaluable), _mean([s.score for s in evaluable]),
                   sum(s.value_passed for s in valued), len(valued), _mean([s.value_score for s in valued]))

    def margin_over(self, other: Headline) -> dict[str, float]:
        """This headline minus ``other``'s: passes and mean scores, all metrics and values only."""
        return {"queries_passed": self.queries_passed - other.queries_passed,
                "mean_score": self.mean_score - other.mean_score,
                "value_queries_passed": self.value_queries_passed - other.value_queries_passed,
                "value_mean_score": self.value_mean_score - other.value_mean_score}

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.queries_passed} of {self.queries_evaluable} evaluable queries pass, mean score "
                f"{self.mean_score:.3f}; on values only {self.value_queries_passed} of "
                f"{self.value_queries_evaluable}, mean {self.value_mean_score:.3f}")


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def headline(scores: list[QueryScore]) -> str:
    """'k of n evaluable queries pass, mean score x; on values only k of n, mean y' (queries without a
    reference are not evaluable)."""
    return str(Headline.of(scores))
