"""Leaderboards with spread and significance: mean ± std over seeds, and every mechanism tested
against a baseline (Welch's t-test and a bootstrap confidence interval of the difference in means).
Claimed gains that vanish under seed variance show up here as wide intervals and large p-values."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

GROUP = ["dataset", "target_epsilon", "mechanism"]


def leaderboard(results: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, target ε, mechanism): accuracy mean and std, seeds, ε spent, verdicts, wall time."""
    results = results.assign(verdict=results["verdict"].fillna("UNVERIFIED"))
    board = (
        results.groupby(GROUP)
        .agg(
            accuracy_mean=("final_accuracy", "mean"),
            accuracy_std=("final_accuracy", lambda x: x.std(ddof=1) if len(x) > 1 else float("nan")),
            seeds=("seed", "nunique"),
            epsilon_spent=("epsilon", "max"),
            verdict=("verdict", lambda v: ",".join(sorted(set(v)))),
            wall_seconds=("wall_seconds", "mean"),
        )
        .reset_index()
    )
    return board.sort_values(["dataset", "target_epsilon", "accuracy_mean"], ascending=[True, True, False], ignore_index=True)


def compare_to_baseline(
    results: pd.DataFrame, baseline: str = "fixed", resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Each mechanism's mean accuracy minus the baseline's, per dataset and target ε."""
    rng = np.random.default_rng(seed)
    rows = []
    for (dataset, target), group in results.groupby(["dataset", "target_epsilon"]):
        reference = group.loc[group["mechanism"] == baseline, "final_accuracy"].to_numpy()
        if len(reference) == 0:
            continue
        for mechanism, runs in group.groupby("mechanism"):
            if mechanism == baseline:
                continue
            values = runs["final_accuracy"].to_numpy()
            difference = values.mean() - reference.mean()
            low = high = p_value = float("nan")
            if len(values) > 1 and len(reference) > 1:
                p_value = float(stats.ttest_ind(values, reference, equal_var=False).pvalue)
                boot = rng.choice(values, (resamples, len(values))).mean(1) - rng.choice(reference, (resamples, len(reference))).mean(1)
                low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
            rows.append(
                {
                    "dataset": dataset,
                    "target_epsilon": target,
                    "mechanism": mechanism,
                    "baseline": baseline,
                    "difference": difference,
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "welch_p_value": p_value,
                    "seeds": len(values),
                    "baseline_seeds": len(reference),
                }
            )
    return pd.DataFrame(rows)


def to_markdown(board: pd.DataFrame, comparisons: pd.DataFrame) -> str:
    """Human-readable tables: accuracy as mean ± std (%), one section per dataset."""
    lines = []
    for dataset, rows in board.groupby("dataset", sort=True):
        lines += [f"### {dataset}", "", "| ε target | mechanism | test accuracy (%) | seeds | ε spent | verdict | wall time (s) | Δ vs fixed (95% CI) | Welch p |", "|---|---|---|---|---|---|---|---|---|"]
        for _, row in rows.iterrows():
            match = comparisons[
                (comparisons.get("dataset") == dataset)
                & (comparisons.get("mechanism") == row["mechanism"])
                & (comparisons.get("target_epsilon") == row["target_epsilon"])
            ] if not comparisons.empty else comparisons
            delta = p = "–"
            if not match.empty:
                m = match.iloc[0]
                delta = f"{100 * m['difference']:+.2f} [{100 * m['ci_low']:+.2f}, {100 * m['ci_high']:+.2f}]"
                p = f"{m['welch_p_value']:.3f}"
            std = "" if np.isnan(row["accuracy_std"]) else f" ± {100 * row['accuracy_std']:.2f}"
            lines.append(
                f"| {row['target_epsilon']:g} | {row['mechanism']} | {100 * row['accuracy_mean']:.2f}{std} | {row['seeds']} | "
                f"{row['epsilon_spent']:.3f} | {row['verdict']} | {row['wall_seconds']:.0f} | {delta} | {p} |"
            )
        lines.append("")
    return "\n".join(lines)
