"""Leaderboards with spread and significance, one row per configuration.

A row averages the finished runs of one configuration (same ``config_id``: the resolved config minus the seed
and execution-only keys, see :mod:`dpbench.reporting.configuration`), so runs that differ in epochs, model,
learning rate or mechanism class never share a row. Every mechanism row is tested against a baseline row
(Welch's t-test and a bootstrap confidence interval of the difference in means) only when the two configs are
identical outside the mechanism group; a table whose rows differ in anything else says which keys.
Claimed gains that vanish under seed variance show up here as wide intervals and large p-values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from scipy import stats

from dpbench.reporting.configuration import describe, differing_keys, is_mechanism_key
from dpbench.training.plugin_loader import BUILTIN_CONFIGS

MECHANISM_TARGET = "mechanism._target_"

TABLE = ["dataset", "target_epsilon"]
GROUP = TABLE + ["mechanism", "config_id"]
NOT_AVAILABLE = "n/a"


def leaderboard(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: accuracy mean and std, runs averaged, distinct seeds, ε spent, verdicts, wall time,
    and ``differs``: what sets this configuration apart from the other rows of its dataset/ε table."""
    results = results.assign(verdict=results["verdict"].fillna("UNVERIFIED"))
    board = (
        results.groupby(GROUP)
        .agg(
            accuracy_mean=("final_accuracy", "mean"),
            accuracy_std=("final_accuracy", lambda x: x.std(ddof=1) if x.count() > 1 else float("nan")),
            n_runs=("final_accuracy", "size"),
            seeds=("seed", "nunique"),
            epsilon_spent=("epsilon", "max"),
            verdict=("verdict", lambda v: ",".join(sorted(set(v)))),
            wall_seconds=("wall_seconds", "mean"),
            mechanism_class=("mechanism_class", "first"),
            context_id=("context_id", "first"),
        )
        .reset_index()
    )
    described = _distinctions(results)
    board["differs"] = [described[tuple(key)] for key in board[GROUP].itertuples(index=False)]
    return board.sort_values(TABLE + ["accuracy_mean"], ascending=[True, True, False], ignore_index=True)


def confounders(results: pd.DataFrame) -> dict[tuple, list[str]]:
    """Per dataset/ε table: the config keys outside the mechanism group whose values differ between its rows.
    Non-empty means the table compares more than mechanisms."""
    return {
        table: [key for key in differing_keys(_configs(runs).values()) if not is_mechanism_key(key)]
        for table, runs in results.groupby(TABLE)
    }


def compare_to_baseline(
    results: pd.DataFrame, baseline: str = "fixed", resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Each configuration's mean accuracy minus that of each ``baseline`` configuration with the same config
    outside the mechanism group (same ``context_id``); a configuration without one is not compared. A baseline
    run is one named ``baseline`` whose ``mechanism._target_`` is the built-in's (conf/mechanism/<baseline>.yaml):
    a plugin run under the baseline's name is compared against it, never taken for it."""
    rng = np.random.default_rng(seed)
    rows = []
    builtin = _builtin_target(baseline)
    is_baseline = (results["mechanism"] == baseline) & results["config"].map(
        lambda config: builtin is None or config.get(MECHANISM_TARGET, builtin) == builtin)
    for (dataset, target), group in results.groupby(TABLE):
        references = group[is_baseline[group.index]].groupby("config_id")
        for (mechanism, config), runs in group[~is_baseline[group.index]].groupby(["mechanism", "config_id"]):
            for baseline_config, reference_runs in references:
                if reference_runs["context_id"].iloc[0] != runs["context_id"].iloc[0]:
                    continue
                values = runs["final_accuracy"].dropna().to_numpy()
                reference = reference_runs["final_accuracy"].dropna().to_numpy()
                if len(values) == 0 or len(reference) == 0:
                    continue
                low = high = p_value = float("nan")
                if len(values) > 1 and len(reference) > 1:
                    p_value = float(stats.ttest_ind(values, reference, equal_var=False).pvalue)
                    boot = (rng.choice(values, (resamples, len(values))).mean(1)
                            - rng.choice(reference, (resamples, len(reference))).mean(1))
                    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
                rows.append({
                    "dataset": dataset, "target_epsilon": target, "mechanism": mechanism, "config_id": config,
                    "baseline": baseline, "baseline_config_id": baseline_config,
                    "difference": values.mean() - reference.mean(), "ci_low": float(low), "ci_high": float(high),
                    "welch_p_value": p_value, "n_runs": len(values), "baseline_n_runs": len(reference),
                })
    columns = ["dataset", "target_epsilon", "mechanism", "config_id", "baseline", "baseline_config_id", "difference",
               "ci_low", "ci_high", "welch_p_value", "n_runs", "baseline_n_runs"]
    return pd.DataFrame(rows, columns=columns)


def to_markdown(board: pd.DataFrame, comparisons: pd.DataFrame, notes: dict[tuple, list[str]],
                baseline: str = "fixed") -> str:
    """Human-readable tables, one per dataset and target ε: accuracy as mean ± std (%), runs averaged, and a
    note when the rows differ in more than the mechanism."""
    lines = []
    for (dataset, target), rows in board.groupby(TABLE, sort=True):
        lines += [f"### {dataset}, ε target {target:g}", ""]
        if notes.get((dataset, target)):
            lines += [
                f"> **Note:** these rows differ in more than the mechanism: {', '.join(notes[(dataset, target)])}. "
                f"Δ vs {baseline} pairs a row only with a {baseline} row whose configuration is otherwise identical; "
                "rows without one show –.",
                "",
            ]
        lines += [
            "| ε target | mechanism | config | differs | test accuracy (%) | n runs | ε spent | verdict "
            f"| wall time (s) | Δ vs {baseline} (95% CI) | Welch p |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, row in rows.iterrows():
            delta, p = _comparison_cells(comparisons, row)
            lines.append(
                f"| {row['target_epsilon']:g} | {row['mechanism']} | {row['config_id']} | {row['differs'] or '–'} "
                f"| {_percent(row['accuracy_mean'])} ± {_percent(row['accuracy_std'])} | {row['n_runs']} "
                f"| {row['epsilon_spent']:.3f} | {row['verdict']} | {row['wall_seconds']:.0f} | {delta} | {p} |"
            )
        lines.append("")
    return "\n".join(lines)


def _builtin_target(mechanism: str) -> str | None:
    """The ``_target_`` of the built-in mechanism config of this name; None if there is none."""
    path = BUILTIN_CONFIGS / f"{mechanism}.yaml"
    return OmegaConf.load(path).get("_target_") if path.exists() else None


def _configs(runs: pd.DataFrame) -> dict[str, dict]:
    return dict(zip(runs["config_id"], runs["config"]))


def _distinctions(results: pd.DataFrame) -> dict[tuple, str]:
    """Per configuration: its values of the keys that differ within its table, mechanism keys counted only
    where rows of the same mechanism differ in them (a my.Class run beside the real ``fixed``)."""
    described = {}
    for table, runs in results.groupby(TABLE):
        configs = _configs(runs)
        shared = [key for key in differing_keys(configs.values()) if not is_mechanism_key(key)]
        for mechanism, own in runs.groupby("mechanism"):
            own_configs = _configs(own)
            keys = shared + [key for key in differing_keys(own_configs.values()) if is_mechanism_key(key)]
            for config, values in own_configs.items():
                described[(*table, mechanism, config)] = describe(values, keys)
    return described


def _comparison_cells(comparisons: pd.DataFrame, row: pd.Series) -> tuple[str, str]:
    keys = TABLE + ["mechanism", "config_id"]
    match = comparisons[(comparisons[keys] == row[keys]).all(axis=1)]
    if match.empty:
        return "–", "–"
    several = len(match) > 1
    deltas, ps = [], []
    for _, m in match.iterrows():
        against = f" vs {m['baseline_config_id']}" if several else ""
        interval = (NOT_AVAILABLE if math.isnan(m["ci_low"])
                    else f"{100 * m['ci_low']:+.2f}, {100 * m['ci_high']:+.2f}")
        deltas.append(f"{100 * m['difference']:+.2f} [{interval}]{against}")
        ps.append(NOT_AVAILABLE if math.isnan(m["welch_p_value"]) else f"{m['welch_p_value']:.3f}")
    return "; ".join(deltas), "; ".join(ps)


def _percent(value: float) -> str:
    return NOT_AVAILABLE if value is None or math.isnan(value) else f"{100 * value:.2f}"
