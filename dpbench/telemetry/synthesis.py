"""After training: sample synthetic devices, decode them into reporting tables, score the queries.

The reference is the benchmark queries run on the input tables themselves (real-vs-synthetic on the
same population size, so counts and HAVING thresholds are comparable). On a 1M-device real corpus
that reference is the published answers; ``python -m dpbench.telemetry score --tables DIR`` scores
any synthetic directory against those too. A query whose reference answer has no rows (e.g. a
HAVING > 100 devices threshold that no group reaches in a small corpus) cannot be scored and is
reported as not evaluable instead of as a pass of two empty answers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dpbench.telemetry.decoder import write_tables
from dpbench.telemetry.marginals import Marginals
from dpbench.telemetry.query_runner import run_queries, write_results
from dpbench.telemetry.scoring import QueryScore, headline, score_answers, summary_table
from dpbench.telemetry.stage_memory import stage
from dpbench.telemetry.wide_table import decode_columns
from dpbench.telemetry.workload import WORKLOAD

EMPTY_REFERENCE = "reference answer has no rows at this population size"
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
        return write_tables(decode_columns(features), out_dir, np.random.default_rng([seed, 7]))


def score_tables(reference_dir: Path | str, candidate_dir: Path | str) -> list[QueryScore]:
    """Score the queries on ``candidate_dir`` against the same queries on ``reference_dir``."""
    return score_candidate_answers(reference_dir, run_queries(candidate_dir, WORKLOAD, allow_empty=True))


def score_candidate_answers(reference_dir: Path | str, answers: dict[str, pd.DataFrame]) -> list[QueryScore]:
    """Score already computed candidate ``answers`` against the queries on ``reference_dir``."""
    with stage("queries on the input tables"):
        references = run_queries(reference_dir, WORKLOAD)
    scores = score_answers(references, answers, WORKLOAD)
    for score in scores:
        if references[score.query] is not None and references[score.query].empty:
            score.metrics, score.error = [], EMPTY_REFERENCE
    return scores


def utility_metrics(scores: list[QueryScore]) -> dict:
    """The headline (passes, evaluable queries, mean score) and each query's score, for summary.json."""
    evaluable = [s for s in scores if not s.error]
    return {
        "queries_passed": sum(s.passed for s in evaluable),
        "queries_evaluable": len(evaluable),
        "mean_score": float(np.mean([s.score for s in evaluable])) if evaluable else None,
        "headline": headline(scores),
        "per_query": {s.query: {"passed": s.passed, "score": None if s.error else s.score, "error": s.error or None,
                                "metrics": {f"{m.column}:{m.measure}": m.value if np.isfinite(m.value) else None
                                            for m in s.metrics}}
                      for s in scores},
    }


def synthesize_and_score(model: torch.nn.Module, n_devices: int, reference_dir: Path | str, out_dir: Path | str,
                         seed: int, marginals: Marginals | None = None) -> dict:
    """Synthesize into ``out_dir/tables``, score against ``reference_dir``, write ``out_dir/scores.csv``."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    rows = synthesize(model, n_devices, out_dir / "tables", seed, marginals)
    with stage("queries on the synthetic tables"):
        answers = run_queries(out_dir / "tables", WORKLOAD, allow_empty=True)
    scores = score_candidate_answers(reference_dir, answers)
    summary_table(scores).to_csv(out_dir / "scores.csv", index=False)
    write_results(answers, out_dir / "answers")
    return utility_metrics(scores) | {"synthetic_devices": n_devices, "synthetic_rows": rows,
                                      "reference": str(reference_dir), "synthetic_tables": str(out_dir / "tables"),
                                      "matched_to_marginals": marginals is not None and hasattr(model, "match_marginals"),
                                      "seconds": time.perf_counter() - started}


def scores_frame(utility: dict) -> pd.DataFrame:
    """One row per query from a utility dict (as stored in summary.json)."""
    return pd.DataFrame([{"query": q, **{k: v for k, v in s.items() if k != "metrics"}}
                         for q, s in utility["per_query"].items()])
