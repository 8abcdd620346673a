"""PNG plots of a results folder: accuracy and ε per epoch by mechanism, accuracy against ε."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


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


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_per_epoch(epochs: pd.DataFrame, column: str, label: str, path: Path) -> Path:
    """Mean (line) and std (band) over seeds of ``column`` per epoch, one line per mechanism and target ε."""
    datasets = sorted(epochs["dataset"].unique())
    figure, axes = _panels(datasets, f"{label} per epoch (mean ± std over seeds)")
    for axis, dataset in zip(axes, datasets):
        rows = epochs[epochs["dataset"] == dataset]
        several_targets = rows["target_epsilon"].nunique() > 1
        for (mechanism, target), run in rows.groupby(["mechanism", "target_epsilon"]):
            stats = run.groupby("epoch")[column].agg(["mean", "std"]).reset_index()
            name = f"{mechanism} (ε={target:g})" if several_targets else mechanism
            axis.plot(stats["epoch"], stats["mean"], marker="o", markersize=3, label=name)
            axis.fill_between(stats["epoch"], stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0), alpha=0.2)
        _finish(axis, dataset, "epoch", label)
    return _save(figure, path)


def plot_accuracy_vs_epsilon(results: pd.DataFrame, path: Path) -> Path | None:
    """Final test accuracy against target ε by mechanism (an ε sweep); None if only one ε was run."""
    if results["target_epsilon"].nunique() < 2:
        return None
    datasets = sorted(results["dataset"].unique())
    figure, axes = _panels(datasets, "final test accuracy against ε (mean ± std over seeds)")
    for axis, dataset in zip(axes, datasets):
        rows = results[results["dataset"] == dataset]
        for mechanism, runs in rows.groupby("mechanism"):
            stats = runs.groupby("target_epsilon")["final_accuracy"].agg(["mean", "std"]).reset_index()
            axis.errorbar(stats["target_epsilon"], 100 * stats["mean"], yerr=100 * stats["std"].fillna(0), marker="o", capsize=3, label=mechanism)
        _finish(axis, dataset, "ε (δ fixed)", "test accuracy (%)")
    return _save(figure, path)
