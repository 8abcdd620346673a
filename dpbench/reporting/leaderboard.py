"""Leaderboards with spread and significance, one row per configuration.

A row averages the finished runs of one configuration (same ``config_id``: the resolved config minus the seed
and execution-only keys, see :mod:`dpbench.reporting.configuration`), so runs that differ in epochs, model,
learning rate or mechanism class never share a row. Every mechanism row is tested against a baseline row
(Welch's t-test and a bootstrap confidence interval of the difference in means) only when the two configs are
identical outside the mechanism group; a table whose rows differ in anything else says which keys.
Claimed gains that vanish under seed variance show up here as wide intervals and large p-values.

How a result was tuned (:mod:`dpbench.search.tuning_record`) splits the tables: untuned runs, models released
by a private search (one row per search; ε is the whole search's, tuning included), runs at hyper-parameters
chosen on a public proxy. A row is compared only with a baseline tuned the same way (for tuned rows the
hyper-parameters each side's search chose may differ, nothing else); a tuned row is never compared with an
untuned one.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from scipy import stats

from dpbench.reporting.configuration import (
    MECHANISM_PREFIX,
    PER_SEARCH_KEYS,
    confounding_keys,
    describe,
    differing_keys,
    is_mechanism_key,
)
from dpbench.search.tuning_record import PRIVATE_SEARCH, PUBLIC_PROXY, UNTUNED
from dpbench.training.plugin_loader import BUILTIN_CONFIGS

MECHANISM_TARGET = "mechanism._target_"

TABLE = ["dataset", "target_epsilon", "tuning"]
GROUP = TABLE + ["mechanism", "config_id"]
NOT_AVAILABLE = "n/a"
TRIAL_LAWS = {0.0: "logarithmic", 1.0: "geometric", math.inf: "Poisson"}


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
            tuned_on=("tuned_on", "first"),
            search_id=("search_id", "first"),
            trials_mean=("trials_mean", "first"),
            trials_shape=("trials_shape", "first"),
            trials_run=("trials_run", "first"),
            epsilon_trial=("epsilon_trial", "max"),
        )
        .reset_index()
    )
    described = _distinctions(results)
    board["differs"] = [described[tuple(key)] for key in board[GROUP].itertuples(index=False)]
    chosen = {(row["config_id"]): describe(row["config"], _searched(row)) for _, row in results.iterrows()}
    board["chosen"] = [chosen[config] if tuning != UNTUNED else "" for config, tuning
                       in zip(board["config_id"], board["tuning"])]
    return board.sort_values(TABLE + ["accuracy_mean"], ascending=[True, True, True, False], ignore_index=True)


def confounders(results: pd.DataFrame) -> dict[tuple, list[str]]:
    """Per table (dataset, ε, how tuned): the config keys outside the mechanism group whose values differ between
    rows that did not tune them (:func:`_held_apart`). Non-empty means the table compares more than mechanisms."""
    return {table: _held_apart(runs) for table, runs in results.groupby(TABLE)}


def _held_apart(runs: pd.DataFrame) -> list[str]:
    """The keys outside the mechanism group (and outside what identifies a search) whose values differ between
    the configurations of ``runs`` that held them fixed, i.e. did not search them. A key that one row's search
    chose is free for that row only: two other rows that held it at different values (40 and 60 epochs beside a
    search of the epochs) still compare more than mechanisms."""
    searched = _searched_by_config(runs)
    configs = _configs(runs)
    always_free = PER_SEARCH_KEYS if (runs["tuning"] != UNTUNED).any() else ()
    return [key for key in confounding_keys(configs.values(), always_free)
            if differing_keys([config for name, config in configs.items() if key not in searched[name]])]


def comparable(run: pd.Series, baseline: pd.Series) -> bool:
    """Whether two runs may be compared as mechanisms: tuned the same way (untuned, private search, public proxy
    on the same dataset), at the same target ε, and with configs identical outside the mechanism group and the
    hyper-parameters that either side's tuning chose."""
    if run["tuning"] != baseline["tuning"] or run["target_epsilon"] != baseline["target_epsilon"]:
        return False
    free = _free_keys(pd.DataFrame([run, baseline]))
    return not confounding_keys([run["config"], baseline["config"]], free)


def compare_to_baseline(
    results: pd.DataFrame, baseline: str = "fixed", resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Each configuration's mean accuracy minus that of each ``baseline`` configuration with the same config
    outside the mechanism group (same ``context_id``); a configuration without one is not compared. A baseline
    run is one named ``baseline`` whose ``mechanism._target_`` is the built-in's (conf/mechanism/<baseline>.yaml):
    a plugin run under the baseline's name is compared against it, never taken for it."""
    rows = []
    is_baseline = baseline_runs(results, baseline)
    for (dataset, target, tuning), group in results.groupby(TABLE):
        references = group[is_baseline[group.index]].groupby("config_id")
        for (mechanism, config), runs in group[~is_baseline[group.index]].groupby(["mechanism", "config_id"]):
            for baseline_config, reference_runs in references:
                if not comparable(runs.iloc[0], reference_runs.iloc[0]):
                    continue
                values = runs["final_accuracy"].dropna().to_numpy()
                reference = reference_runs["final_accuracy"].dropna().to_numpy()
                if len(values) == 0 or len(reference) == 0:
                    continue
                rng = comparison_rng(seed, config, baseline_config)
                low, high, p_value = difference_statistics(values, reference, rng, resamples, confidence)
                rows.append({
                    "dataset": dataset, "target_epsilon": target, "tuning": tuning, "mechanism": mechanism,
                    "config_id": config, "baseline": baseline, "baseline_config_id": baseline_config,
                    "baseline_tuning": reference_runs["tuning"].iloc[0],
                    "difference": values.mean() - reference.mean(), "ci_low": low, "ci_high": high,
                    "welch_p_value": p_value, "n_runs": len(values), "baseline_n_runs": len(reference),
                })
    columns = ["dataset", "target_epsilon", "tuning", "mechanism", "config_id", "baseline", "baseline_config_id",
               "baseline_tuning", "difference", "ci_low", "ci_high", "welch_p_value", "n_runs", "baseline_n_runs"]
    return pd.DataFrame(rows, columns=columns)


def baseline_runs(results: pd.DataFrame, baseline: str) -> pd.Series:
    """Which runs are the ``baseline``: named so and, where a built-in of that name exists, running its class
    (a plugin recorded under the baseline's name is compared against it, never taken for it)."""
    builtin = _builtin_target(baseline)
    return (results["mechanism"] == baseline) & results["config"].map(
        lambda config: builtin is None or config.get(MECHANISM_TARGET, builtin) == builtin)


def comparison_rng(seed: int, *key: object) -> np.random.Generator:
    """The bootstrap's generator for one comparison, drawn from ``seed`` and the compared pair's identifiers, so
    that a comparison's interval is the same whichever other rows the results hold."""
    return np.random.default_rng([seed, *(zlib.crc32(str(part).encode()) for part in key)])


def difference_statistics(values: np.ndarray, reference: np.ndarray, rng: np.random.Generator, resamples: int,
                          confidence: float) -> tuple[float, float, float]:
    """The bootstrap confidence interval (``confidence``, ``resamples`` draws) of ``mean(values) -
    mean(reference)`` and Welch's t-test p-value; NaN for all three unless both sides hold two or more values."""
    if len(values) < 2 or len(reference) < 2:
        return float("nan"), float("nan"), float("nan")
    p_value = float(stats.ttest_ind(values, reference, equal_var=False).pvalue)
    boot = (rng.choice(values, (resamples, len(values))).mean(1)
            - rng.choice(reference, (resamples, len(reference))).mean(1))
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high), p_value


HEADINGS = {
    UNTUNED: "{dataset}, ε target {target:g}, untuned (every run at the hyper-parameters it was given)",
    PRIVATE_SEARCH: "{dataset}, ε {target:g} in total, tuning included: tuned by a private search on {dataset}",
    PUBLIC_PROXY: "{dataset}, ε target {target:g}, tuned on a public proxy (no tuning cost charged to {dataset})",
}


def to_markdown(board: pd.DataFrame, comparisons: pd.DataFrame, notes: dict[tuple, list[str]],
                baseline: str = "fixed", operator_view: bool = False) -> str:
    """Human-readable tables, one per dataset, target ε and way of tuning: accuracy as mean ± std (%), runs
    averaged, and a note when the rows differ in more than the mechanism. A tuned table says how each row was
    tuned, the hyper-parameters chosen, K and the ε of the whole search; K itself (the operator's secret) only
    with ``operator_view``, else its law."""
    lines = []
    tunings = board.groupby(["dataset", "target_epsilon"])["tuning"].agg(set)
    for (dataset, target, tuning), rows in board.groupby(TABLE, sort=True):
        lines += [f"### {HEADINGS[tuning].format(dataset=dataset, target=target)}", ""]
        if tuning != UNTUNED:
            lines += [
                (f"> Δ vs {baseline} compares a row only with a {baseline} row tuned the same way ({tuning}"
                 f"{' on the same public dataset' if tuning == PUBLIC_PROXY else ''}) whose configuration differs "
                 "in nothing but the mechanism and the hyper-parameters each search chose; never with an untuned "
                 "run."),
                "",
            ]
        elif len(tunings[(dataset, target)]) > 1:
            lines += [("> Tuned results at this ε are in their own tables: an untuned row is never compared with a "
                       "tuned one."), ""]
        if notes.get((dataset, target, tuning)):
            lines += [
                (f"> **Note:** these rows differ in more than the mechanism: "
                 f"{', '.join(notes[(dataset, target, tuning)])}. Δ vs {baseline} pairs a row only with a {baseline} "
                 "row whose configuration is otherwise identical; rows without one show –."),
                "",
            ]
        columns = _columns(tuning, baseline, operator_view)
        lines += ["| " + " | ".join(header for header, _ in columns) + " |", "|" + "---|" * len(columns)]
        for _, row in rows.iterrows():
            cells = {"comparison": comparison_cells(comparisons, row)}
            lines.append("| " + " | ".join(cell(row, cells) for _, cell in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def _columns(tuning: str, baseline: str, operator_view: bool) -> list[tuple[str, object]]:
    """(header, cell function) per column of a table of rows tuned this way."""
    common_head = [
        ("ε target", lambda row, _: f"{row['target_epsilon']:g}"),
        ("mechanism", lambda row, _: row["mechanism"]),
        ("config", lambda row, _: row["config_id"]),
        ("differs", lambda row, _: row["differs"] or "–"),
    ]
    accuracy = [
        ("test accuracy (%)",
         lambda row, _: f"{percent_cell(row['accuracy_mean'])} ± {percent_cell(row['accuracy_std'])}"),
        ("n runs", lambda row, _: str(row["n_runs"])),
    ]
    common_tail = [
        ("verdict", lambda row, _: row["verdict"]),
        ("wall time (s)", lambda row, _: f"{row['wall_seconds']:.0f}"),
        (f"Δ vs {baseline} (95% CI)", lambda _, cells: cells["comparison"][0]),
        ("Welch p", lambda _, cells: cells["comparison"][1]),
    ]
    if tuning == UNTUNED:
        return [*common_head, *accuracy, ("ε spent", lambda row, _: epsilon_cell(row["epsilon_spent"])), *common_tail]
    tuned = [
        ("tuned", lambda row, _: _tuned_on(row)),
        ("chosen", lambda row, _: row["chosen"] or "–"),
    ]
    if tuning == PRIVATE_SEARCH:
        spent = [
            ("K", lambda row, _: _trial_count(row, operator_view)),
            ("ε spent, tuning included", lambda row, _: epsilon_cell(row["epsilon_spent"])),
            ("ε per trial", lambda row, _: epsilon_cell(row["epsilon_trial"])),
        ]
    else:
        spent = [
            ("K", lambda row, _: _trial_count(row, operator_view)),
            ("ε spent (tuning: none charged)", lambda row, _: epsilon_cell(row["epsilon_spent"])),
        ]
    return [*common_head[:2], *tuned, *common_head[2:], *accuracy, *spent, *common_tail]


def _tuned_on(row: pd.Series) -> str:
    if row["tuning"] == PRIVATE_SEARCH:
        return f"private search on {row['tuned_on']}"
    return f"public proxy: {row['tuned_on']}"


def _trial_count(row: pd.Series, show: bool) -> str:
    """K for a public proxy (public); for a private search its law, and K itself only in the operator's view."""
    if row["tuning"] == PUBLIC_PROXY:
        return NOT_AVAILABLE if pd.isna(row["trials_run"]) else f"{int(row['trials_run'])}"
    law = trial_law(row)
    if show and not pd.isna(row["trials_run"]):
        return f"{int(row['trials_run'])} (operator only; {law})"
    return f"secret ({law})"


def trial_law(row: pd.Series) -> str:
    """K's law as a private search's row records it (``trials_shape``, ``trials_mean``)."""
    shape, mean = float(row["trials_shape"]), float(row["trials_mean"])
    return f"{TRIAL_LAWS.get(shape, f'negative binomial η={shape:g}')}, mean {mean:g}"


def epsilon_cell(value: float) -> str:
    return "unbounded" if value is None or pd.isna(value) or math.isinf(value) else f"{value:.3f}"


def _searched(row: pd.Series) -> list[str]:
    searched = row.get("searched")
    return list(searched) if isinstance(searched, (list, tuple)) else []


def _free_keys(runs: pd.DataFrame) -> set[str]:
    """What tuning chose in these runs (their searched keys, and the mechanism's settings, which a space sets
    directly or through an interpolation such as ``max_grad_norm: ${train.max_grad_norm}``) and what identifies
    a search's trial: free to differ between tuned rows that are compared. Nothing for untuned runs. The
    mechanism's class (``_target_``, ``mechanism_class``) is never free."""
    tuned = runs[runs["tuning"] != UNTUNED]
    if tuned.empty:
        return set()
    settings = {key for config in tuned["config"] for key in config
                if key.startswith(MECHANISM_PREFIX) and key != MECHANISM_TARGET}
    return set(PER_SEARCH_KEYS).union(settings, *(_searched(row) for _, row in tuned.iterrows()))


def _builtin_target(mechanism: str) -> str | None:
    """The ``_target_`` of the built-in mechanism config of this name; None if there is none."""
    path = BUILTIN_CONFIGS / f"{mechanism}.yaml"
    return OmegaConf.load(path).get("_target_") if path.exists() else None


def _configs(runs: pd.DataFrame) -> dict[str, dict]:
    return dict(zip(runs["config_id"], runs["config"]))


def _searched_by_config(runs: pd.DataFrame) -> dict[str, set[str]]:
    """Per configuration: the keys its search chose (none for an untuned one)."""
    return {config: set(_searched(row)) for config, row in zip(runs["config_id"], runs.to_dict("records"))}


def _distinctions(results: pd.DataFrame) -> dict[tuple, str]:
    """Per configuration: its values of the keys that differ within its table (less what tuning chose), mechanism
    keys counted only where rows of the same mechanism differ in them (a my.Class run beside the real ``fixed``)."""
    described = {}
    for table, runs in results.groupby(TABLE):
        free = _free_keys(runs)
        held_apart = _held_apart(runs)
        searched = _searched_by_config(runs)
        for mechanism, own in runs.groupby("mechanism"):
            own_configs = _configs(own)
            mechanism_keys = [key for key in differing_keys(own_configs.values())
                              if is_mechanism_key(key) and key not in free]
            for config, values in own_configs.items():
                held = [key for key in held_apart if key not in searched[config]]  # a chosen value is in "chosen"
                described[(*table, mechanism, config)] = describe(values, held + mechanism_keys)
    return described


def comparison_cells(comparisons: pd.DataFrame, row: pd.Series, keys: list[str] = GROUP,
                     against_column: str = "baseline_config_id") -> tuple[str, str]:
    """The Δ (95% CI) and Welch p cells of ``row`` (matched on ``keys``); each baseline named by
    ``against_column`` when there are several."""
    match = comparisons[(comparisons[keys] == row[keys]).all(axis=1)] if not comparisons.empty else comparisons
    if match.empty:
        return "–", "–"
    several = len(match) > 1
    deltas, ps = [], []
    for _, m in match.iterrows():
        against = f" vs {m[against_column]}" if several else ""
        interval = (NOT_AVAILABLE if math.isnan(m["ci_low"])
                    else f"{100 * m['ci_low']:+.2f}, {100 * m['ci_high']:+.2f}")
        deltas.append(f"{100 * m['difference']:+.2f} [{interval}]{against}")
        ps.append(NOT_AVAILABLE if math.isnan(m["welch_p_value"]) else f"{m['welch_p_value']:.3f}")
    return "; ".join(deltas), "; ".join(ps)


def percent_cell(value: float) -> str:
    return NOT_AVAILABLE if value is None or math.isnan(value) else f"{100 * value:.2f}"
