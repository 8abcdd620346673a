"""How each mechanism's accuracy depends on its searched hyper-parameters, from the trials of private searches.

    python scripts/trial_sensitivity.py RESULTS [--dataset NAME]

Reads every finished trial under ``RESULTS/searches/*/runs/*/summary.json`` and prints, per dataset and
mechanism, each searched key's Spearman rank correlation with the trial's test accuracy (numeric keys, from
``MIN_TRIALS`` trials on) or the mean accuracy per value (choices), with the number of trials. It is the
operator's view: the trials are models a search did not release, so this is for benchmarks on public data
(or the operator), not for publication about private data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy import stats

from dpbench.reporting.configuration import flatten

MIN_TRIALS = 5  # fewer trials than this give no rank correlation (two points always give +-1)


def trials(results: Path) -> pd.DataFrame:
    """One row per finished trial: dataset, mechanism, test accuracy and its searched values."""
    rows = []
    for plan_file in sorted(results.glob("searches/*/search.json")):
        searched = sorted({key for trial in json.loads(plan_file.read_text())["trials"] for key in trial})
        for summary_file in plan_file.parent.glob("runs/*/summary.json"):
            summary = json.loads(summary_file.read_text())
            if summary.get("status") != "finished" or "config" not in summary:
                continue
            config = flatten(summary["config"])
            rows.append({"dataset": summary["dataset"], "mechanism": summary["mechanism"],
                         "accuracy": summary["final_accuracy"], **{key: config.get(key) for key in searched}})
    return pd.DataFrame(rows)


def sensitivity(table: pd.DataFrame) -> list[str]:
    """Markdown lines: per (dataset, mechanism), each searched key against accuracy."""
    lines = ["| dataset | mechanism | trials | accuracy (%) median [min, max] | searched key: effect on accuracy |",
             "|---|---|---|---|---|"]
    for (dataset, mechanism), rows in table.groupby(["dataset", "mechanism"]):
        effects = []
        for key in [c for c in rows.columns if c not in ("dataset", "mechanism", "accuracy")]:
            values = rows[key].dropna()
            if values.nunique() < 2:
                continue
            if pd.api.types.is_numeric_dtype(values):
                if len(values) < MIN_TRIALS:
                    continue
                rho = stats.spearmanr(values, rows.loc[values.index, "accuracy"]).statistic
                effects.append(f"{key} ρ={rho:+.2f}")
            else:
                means = rows.loc[values.index].groupby(key)["accuracy"].mean()
                effects.append(f"{key}: " + ", ".join(f"{v} {100 * m:.1f}" for v, m in means.items()))
        accuracy = 100 * rows["accuracy"]
        lines.append(f"| {dataset} | {mechanism} | {len(rows)} | {accuracy.median():.2f} [{accuracy.min():.2f}, "
                     f"{accuracy.max():.2f}] | {'; '.join(effects) or '–'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--dataset", default=None)
    args = parser.parse_args()
    table = trials(args.results)
    if table.empty:
        raise SystemExit(f"no finished search trial under {args.results}/searches")
    if args.dataset:
        table = table[table["dataset"] == args.dataset]
    print("\n".join(sensitivity(table)))


if __name__ == "__main__":
    main()
