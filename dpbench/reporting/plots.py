"""PNG plots of a results folder: accuracy and ε per epoch by mechanism, accuracy against ε."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def _panels(datasets: list[str], title: str):
    figure, axes = plt.subplots(1, len(datasets), figsize=(max(7.5, 5.5 * len(datasets)), 4.2), squeeze=False)
    figure.suptitle(title, fontsize=11)
    return figure, axes[0]


def _finish(axis, dataset: str, xlabel: str, ylabel: str) -> None:
    axis.set_title(dataset)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)


def _line_name(rows: pd.DataFrame, mechanism: str, id_column: str, identity: str) -> str:
    """The mechanism's name, with the config id when the mechanism has more than one line in the panel."""
    several = rows.loc[rows["mechanism"] == mechanism, id_column].nunique() > 1
    return f"{mechanism} [{identity}]" if several else mechanism


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_per_epoch(epochs: pd.DataFrame, column: str, label: str, path: Path) -> Path:
    """Mean (line) and std (band) over seeds of ``column`` per epoch, one line per configuration."""
    datasets = sorted(epochs["dataset"].unique())
    figure, axes = _panels(datasets, f"{label} per epoch (mean ± std over seeds)")
    for axis, dataset in zip(axes, datasets):
        rows = epochs[epochs["dataset"] == dataset]
        several_targets = rows["target_epsilon"].nunique() > 1
        for (mechanism, target, config), run in rows.groupby(["mechanism", "target_epsilon", "config_id"]):
            stats = run.groupby("epoch")[column].agg(["mean", "std"]).reset_index()
            name = _line_name(rows, mechanism, "config_id", config) + (f" (ε={target:g})" if several_targets else "")
            axis.plot(stats["epoch"], stats["mean"], marker="o", markersize=3, label=name)
            spread = stats["std"].fillna(0)
            axis.fill_between(stats["epoch"], stats["mean"] - spread, stats["mean"] + spread, alpha=0.2)
        _finish(axis, dataset, "epoch", label)
    return _save(figure, path)


def plot_accuracy_vs_epsilon(results: pd.DataFrame, path: Path) -> Path | None:
    """Final test accuracy against target ε, one line per configuration but for ε; None if only one ε was run."""
    if results["target_epsilon"].nunique() < 2:
        return None
    datasets = sorted(results["dataset"].unique())
    figure, axes = _panels(datasets, "final test accuracy against ε (mean ± std over seeds)")
    for axis, dataset in zip(axes, datasets):
        rows = results[results["dataset"] == dataset]
        for (mechanism, sweep), runs in rows.groupby(["mechanism", "sweep_id"]):
            stats = runs.groupby("target_epsilon")["final_accuracy"].agg(["mean", "std"]).reset_index()
            axis.errorbar(stats["target_epsilon"], 100 * stats["mean"], yerr=100 * stats["std"].fillna(0), marker="o",
                          capsize=3, label=_line_name(rows, mechanism, "sweep_id", sweep))
        _finish(axis, dataset, "ε (δ fixed)", "test accuracy (%)")
    return _save(figure, path)


def plot_tuned_pipelines(table: pd.DataFrame, path: Path) -> Path | None:
    """Tuned pipelines' accuracy (mean ± std over their searches) against the ε of each search, tuning included,
    one series per mechanism (offset a little along ε so that pipelines at one ε stay apart); None if none."""
    if table.empty:
        return None
    datasets = sorted(table["dataset"].unique())
    figure, axes = _panels(datasets, "tuned pipelines: test accuracy against ε, tuning included (mean ± std over "
                                     "searches)")
    for axis, dataset in zip(axes, datasets):
        rows = table[table["dataset"] == dataset]
        names = sorted(rows["mechanism"].unique())
        for (mechanism, pipeline), line in rows.groupby(["mechanism", "pipeline"]):
            line = line.sort_values("target_epsilon")
            offset = 1 + 0.01 * (names.index(mechanism) - (len(names) - 1) / 2)
            axis.errorbar(line["target_epsilon"] * offset, 100 * line["accuracy_mean"],
                          yerr=100 * line["accuracy_std"].fillna(0), marker="o", capsize=3,
                          label=_line_name(rows, mechanism, "pipeline", pipeline))
        _finish(axis, dataset, "ε per search, tuning included", "test accuracy (%)")
    return _save(figure, path)
