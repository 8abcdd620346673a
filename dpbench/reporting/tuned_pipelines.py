"""Tuned pipelines: independent private searches of one configuration, averaged.

One private search releases one model, whose accuracy depends on the search's luck (K, the trials drawn, the
noise): a single search says little about a mechanism. A *pipeline* is what a search is run from, its base
configuration (dataset, model, preset, mechanism, search space, law of K, validation split; ``pipeline_id``,
:func:`dpbench.search.tuning_record.pipeline_id`). Searches of one pipeline with other seeds and their own secret
draws are replications, and the mean of their released models' accuracies estimates what the pipeline delivers:
the number to compare mechanisms on. Each search is a separate release at its own total ε (tuning included); the
table reports that ε, never a sum, because the replications are there to measure the pipeline, not to be
published together as one model.

A pipeline is compared with a ``fixed`` pipeline of the same dataset and ε whose configurations differ only in the
mechanism and in what the searches chose (bootstrap 95% CI of the difference of means and Welch's t-test over
searches). The spread of all trials' test accuracies (how sensitive the mechanism is to its hyper-parameters) is
the operator's: it describes models the search did not release, so it is shown only in the operator's view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dpbench.reporting.leaderboard import (
    NOT_AVAILABLE,
    TABLE,
    baseline_runs,
    comparable,
    comparison_cells,
    comparison_rng,
    difference_statistics,
    epsilon_cell,
    percent_cell,
    trial_law,
)
from dpbench.search.tuning_record import PRIVATE_SEARCH

PIPELINE = "pipeline"
GROUP = TABLE + ["mechanism", PIPELINE]


def searches(results: pd.DataFrame) -> pd.DataFrame:
    """The private searches' released models, each with its pipeline (rows written before pipelines were
    recorded count as a pipeline of their own)."""
    rows = results[results["tuning"] == PRIVATE_SEARCH]
    if rows.empty:
        return rows.assign(**{PIPELINE: []})
    recorded = rows["pipeline_id"] if "pipeline_id" in rows else pd.Series(None, index=rows.index, dtype=object)
    return rows.assign(**{PIPELINE: recorded.astype(object).where(recorded.notna(), rows["config_id"])})


def pipelines(results: pd.DataFrame) -> pd.DataFrame:
    """Per pipeline: the released models' accuracy mean and std over its searches, how many searches, the
    largest total ε and per-trial ε among them, K's law and the verdicts."""
    rows = searches(results)
    columns = [*GROUP, "accuracy_mean", "accuracy_std", "n_searches", "epsilon_spent", "epsilon_trial",
               "trials_mean", "trials_shape", "verdict"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    table = (
        rows.groupby(GROUP)
        .agg(
            accuracy_mean=("final_accuracy", "mean"),
            accuracy_std=("final_accuracy", lambda x: x.std(ddof=1) if x.count() > 1 else float("nan")),
            n_searches=("final_accuracy", "size"),
            epsilon_spent=("epsilon", lambda e: float("inf") if e.isna().any() else e.max()),
            epsilon_trial=("epsilon_trial", "max"),
            trials_mean=("trials_mean", "first"),
            trials_shape=("trials_shape", "first"),
            verdict=("verdict", lambda v: ",".join(sorted(set(v)))),
        )
        .reset_index()
    )
    return table.sort_values(TABLE + ["accuracy_mean"], ascending=[True, True, True, False],
                             ignore_index=True)[columns]


def compare_pipelines(results: pd.DataFrame, baseline: str = "fixed", resamples: int = 10000,
                      confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Each pipeline's mean accuracy minus each comparable ``baseline`` pipeline's, over their searches; a plugin
    recorded under the baseline's name is compared against it, never taken for it."""
    rows = searches(results)
    out = []
    is_baseline = baseline_runs(rows, baseline)
    for _, table in rows.groupby(TABLE):
        references = table[is_baseline[table.index]].groupby(PIPELINE)
        for (mechanism, pipeline), own in table[~is_baseline[table.index]].groupby(["mechanism", PIPELINE]):
            for reference_pipeline, reference_rows in references:
                if not comparable(own.iloc[0], reference_rows.iloc[0]):
                    continue
                values = own["final_accuracy"].dropna().to_numpy()
                reference = reference_rows["final_accuracy"].dropna().to_numpy()
                rng = comparison_rng(seed, pipeline, reference_pipeline)
                low, high, p_value = difference_statistics(values, reference, rng, resamples, confidence)
                out.append({
                    **dict(zip(TABLE, own.iloc[0][TABLE])), "mechanism": mechanism, PIPELINE: pipeline,
                    "baseline_pipeline": reference_pipeline, "difference": values.mean() - reference.mean(),
                    "ci_low": low, "ci_high": high, "welch_p_value": p_value,
                    "n_searches": len(values), "baseline_n_searches": len(reference),
                })
    columns = [*GROUP, "baseline_pipeline", "difference", "ci_low", "ci_high", "welch_p_value", "n_searches",
               "baseline_n_searches"]
    return pd.DataFrame(out, columns=columns)


def trial_spread(results: pd.DataFrame, results_dir: Path) -> pd.DataFrame:
    """The operator's view: per pipeline, the test accuracies of every finished trial of its searches (read from
    each search's own table, ``<results>/searches/<search_id>/results.jsonl``): median, min, max and count."""
    accuracies: dict[tuple, list[float]] = {}
    for _, row in searches(results).iterrows():
        table = Path(results_dir) / "searches" / str(row["search_id"]) / "results.jsonl"
        if not table.exists():
            continue
        trials = pd.read_json(table, lines=True)
        if "trial" not in trials or "final_accuracy" not in trials:
            continue
        trials = trials[trials["trial"].notna()].drop_duplicates(subset="run_dir", keep="last")
        accuracies.setdefault(tuple(row[GROUP]), []).extend(trials["final_accuracy"].dropna().tolist())
    return pd.DataFrame(
        [(*key, float(np.median(a)), min(a), max(a), len(a)) for key, a in accuracies.items() if a],
        columns=[*GROUP, "trials_median", "trials_min", "trials_max", "n_trials"],
    )


def to_markdown(table: pd.DataFrame, comparisons: pd.DataFrame, spread: pd.DataFrame | None = None,
                baseline: str = "fixed") -> str:
    """One table per dataset and ε: each pipeline's mean ± std over its searches; the trials' spread only when
    ``spread`` (the operator's view) is given."""
    lines = []
    for (dataset, target, _), rows in table.groupby(TABLE, sort=True):
        lines += [
            f"### {dataset}, ε {target:g} per search, tuning included: tuned pipelines (mean over independent "
            "private searches)", "",
            (f"> Each search is its own release at the ε shown; Δ vs {baseline} compares the means over searches "
             f"with a {baseline} pipeline that differs only in the mechanism and in what the searches chose."), "",
        ]
        headers = ["mechanism", "pipeline", "test accuracy (%)", "n searches", "K", "ε per search",
                   "ε per trial", "verdict", f"Δ vs {baseline} (95% CI)", "Welch p"]
        if spread is not None:
            headers.insert(4, "trials' test accuracy, median [min, max] (operator only)")
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for _, row in rows.iterrows():
            delta, p_value = comparison_cells(comparisons, row, GROUP, "baseline_pipeline")
            accuracy = f"{percent_cell(row['accuracy_mean'])} ± {percent_cell(row['accuracy_std'])}"
            cells = [row["mechanism"], row[PIPELINE], accuracy, str(row["n_searches"]), f"secret ({trial_law(row)})",
                     epsilon_cell(row["epsilon_spent"]), epsilon_cell(row["epsilon_trial"]), row["verdict"], delta,
                     p_value]
            if spread is not None:
                cells.insert(4, _spread(spread, row))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _spread(spread: pd.DataFrame, row: pd.Series) -> str:
    match = spread[(spread[GROUP] == row[GROUP]).all(axis=1)] if not spread.empty else spread
    if match.empty:
        return NOT_AVAILABLE
    m = match.iloc[0]
    return (f"{percent_cell(m['trials_median'])} [{percent_cell(m['trials_min'])}, {percent_cell(m['trials_max'])}] "
            f"({int(m['n_trials'])} trial{'s' if m['n_trials'] != 1 else ''})")
