"""After training: sample synthetic devices, decode them into reporting tables, score the queries.

The reference is the benchmark queries run on the input tables themselves (real-vs-synthetic on the
same population size, so counts and HAVING thresholds are comparable). On a 1M-device real corpus
that reference is the published answers; ``python -m dpbench.telemetry score --tables DIR`` scores
any synthetic directory against those too. A query whose reference answer has no rows (e.g. a
HAVING > 100 devices threshold that no group reaches in a small corpus) cannot be scored and is
reported as not evaluable (``scoring.EMPTY_REFERENCE``) instead of as a pass of two empty answers.

Beside the passes and mean score, the utility reports the same on value metrics only (no key overlap,
no device or row counts) and the margins over two reference points on the same input corpus: the
keys-and-counts baseline (its answers' keys and counts, global means elsewhere) and the halves noise
floor (one half of its devices against the other); see :mod:`.baselines`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dpbench.telemetry.baselines import BASELINE, HALVES, halves_noise_floor, margins, trivial_baseline_scores
from dpbench.telemetry.benchmark_queries import BENCHMARK
from dpbench.telemetry.decoder import write_tables
from dpbench.telemetry.marginals import Marginals
from dpbench.telemetry.query_runner import run_queries, write_results
from dpbench.telemetry.scoring import Headline, QueryScore, score_answers, summary_table
from dpbench.telemetry.stage_memory import stage

MATCHING_ROWS = 16_384
"""Latent draws over which a model's sampling is matched to released marginals."""


def synthesize(model: torch.nn.Module, n_devices: int, out_dir: Path | str, seed: int,
               marginals: Marginals | None = None) -> dict[str, int]:
    """Sample ``n_devices`` wide rows from ``model`` (which has ``sample(n, generator)``) and write the tables.

    With ``marginals`` (a DP release), a model that can match them (``match_marginals``: the hurdle VAE)
    is matched to them first (:mod:`.marginals`).
    """
    generator = torch.Generator().manual_seed(seed)
    with stage("sample synthetic devices"):
        if marginals is not None and hasattr(model, "match_marginals"):
            model.match_marginals(marginals, MATCHING_ROWS, generator)
        features = model.sample(n_devices, generator).numpy()
    with stage("decode and write synthetic tables"):
        return write_tables(features, out_dir, np.random.default_rng([seed, 7]))


def score_tables(reference_dir: Path | str, candidate_dir: Path | str) -> list[QueryScore]:
    """Score the queries on ``candidate_dir`` against the same queries on ``reference_dir``."""
    return score_candidate_answers(reference_dir, run_queries(candidate_dir, BENCHMARK, allow_empty=True))


def score_candidate_answers(reference_dir: Path | str, answers: dict[str, pd.DataFrame]) -> list[QueryScore]:
    """Score already computed candidate ``answers`` against the queries on ``reference_dir``."""
    return score_answers(reference_answers(reference_dir), answers, BENCHMARK)


def reference_answers(reference_dir: Path | str) -> dict[str, pd.DataFrame]:
    """The queries' answers on the input tables (the reference)."""
    with stage("queries on the input tables"):
        return run_queries(reference_dir, BENCHMARK)


def reference_points(reference_dir: Path | str, references: dict[str, pd.DataFrame]) -> dict[str, list[QueryScore]]:
    """The keys-and-counts baseline of the reference answers and the halves noise floor of the input tables."""
    with stage("baseline and halves noise floor of the input tables"):
        return {BASELINE: trivial_baseline_scores(references, BENCHMARK), HALVES: halves_noise_floor(reference_dir)}


def _finite(value: float) -> float | None:
    """A count stays an int; a score becomes None where it is not finite (summary.json holds no NaN)."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value) if np.isfinite(value) else None


def utility_metrics(scores: list[QueryScore], points: dict[str, list[QueryScore]] | None = None) -> dict:
    """For summary.json: the headline (passes, evaluable queries, mean score, and the same on value metrics
    only), each query's scores, and, given reference ``points``, each one's headline and the margin over it."""
    head = Headline.of(scores)
    utility = {
        "queries_passed": head.queries_passed,
        "queries_evaluable": head.queries_evaluable,
        "mean_score": _finite(head.mean_score),
        "value_queries_passed": head.value_queries_passed,
        "value_queries_evaluable": head.value_queries_evaluable,
        "value_mean_score": _finite(head.value_mean_score),
        "headline": str(head),
        "per_query": {s.query: {"passed": s.passed, "score": None if s.error else s.score,
                                "value_passed": s.value_passed, "value_score": _finite(s.value_score),
                                "error": s.error or None,
                                "metrics": {f"{m.column}:{m.measure}": _finite(m.value) for m in s.metrics},
                                "value_metrics": [f"{m.column}:{m.measure}" for m in s.value_metrics]}
                      for s in scores},
    }
    if points:
        utility["reference_points"] = {name: {k: _finite(v) for k, v in entry["headline"].items()}
                                       | {"margin": {k: _finite(v) for k, v in entry["margin"].items()}}
                                       for name, entry in margins(scores, points).items()}
    return utility


def synthesize_and_score(model: torch.nn.Module, n_devices: int, reference_dir: Path | str, out_dir: Path | str,
                         seed: int, marginals: Marginals | None = None) -> dict:
    """Synthesize into ``out_dir/tables``, score against ``reference_dir``, write ``out_dir/scores.csv``."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    rows = synthesize(model, n_devices, out_dir / "tables", seed, marginals)
    with stage("queries on the synthetic tables"):
        answers = run_queries(out_dir / "tables", BENCHMARK, allow_empty=True)
    references = reference_answers(reference_dir)
    scores = score_answers(references, answers, BENCHMARK)
    summary_table(scores).to_csv(out_dir / "scores.csv", index=False)
    write_results(answers, out_dir / "answers")
    return utility_metrics(scores, reference_points(reference_dir, references)) | {"synthetic_devices": n_devices, "synthetic_rows": rows,
                                      "reference": str(reference_dir), "synthetic_tables": str(out_dir / "tables"),
                                      "matched_to_marginals": marginals is not None and hasattr(model, "match_marginals"),
                                      "seconds": time.perf_counter() - started}


def scores_frame(utility: dict) -> pd.DataFrame:
    """One row per query from a utility dict (as stored in summary.json)."""
    return pd.DataFrame([{"query": q, **{k: v for k, v in s.items() if k not in ("metrics", "value_metrics")}}
                         for q, s in utility["per_query"].items()])


def format_reference_points(utility: dict) -> str:
    """One line per reference point of a utility dict: its headline and the margin over it."""
    lines = []
    for name, point in utility.get("reference_points", {}).items():
        m = point["margin"]
        lines.append(f"{name}: {point['queries_passed']} of {point['queries_evaluable']} pass "
                     f"(values {point['value_queries_passed']} of {point['value_queries_evaluable']}); margin "
                     f"{m['queries_passed']:+d} queries, {m['mean_score']:+.3f} mean score, on values "
                     f"{m['value_queries_passed']:+d} queries, {m['value_mean_score']:+.3f}")
    return "\n".join(lines)
