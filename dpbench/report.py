"""``python -m dpbench.report [RESULTS] [--out DIR] [--baseline fixed] [--operator-view] [--publish DIR]``: leaderboards
and plots.

Reads ``RESULTS/results.jsonl`` (default ``results/``), each run's ``summary.json`` (its config: one leaderboard
row per configuration, see docs/leaderboard.md) and ``metrics.jsonl``; writes
``leaderboard.md``, ``leaderboard.csv``, ``comparisons.csv`` and PNG plots into ``--out``
(default ``RESULTS/report``) and prints the markdown leaderboard. A private search's released model is a tuned
row with the search's ε, tuning included, and independent searches of one configuration are averaged into a tuned
pipeline row (:mod:`dpbench.reporting.tuned_pipelines`). A search's K is shown as its law unless
``--operator-view`` asks for the operator's view, which also shows the test accuracies of every trial (neither may
be published: K voids the tuning bound, and the trials are models the search did not release); the CSVs hold them
only then. ``--publish DIR`` first copies what of RESULTS may be published into DIR (no K, no trial, no
checkpoint; :mod:`dpbench.reporting.publish`) and reports DIR.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dpbench.reporting.leaderboard import compare_to_baseline, confounders, leaderboard, to_markdown
from dpbench.reporting.plots import plot_accuracy_vs_epsilon, plot_per_epoch, plot_tuned_pipelines
from dpbench.reporting.publish import PublishError, publish
from dpbench.reporting.results_table import load_epoch_metrics, load_results
from dpbench.reporting.tuned_pipelines import compare_pipelines, pipelines, trial_spread
from dpbench.reporting.tuned_pipelines import to_markdown as pipelines_markdown
from dpbench.search.tuning_record import PRIVATE_SEARCH


def write_report(results_dir: Path, out: Path, baseline: str = "fixed", operator_view: bool = False
                 ) -> dict[str, Path]:
    results = load_results(results_dir)
    epochs = load_epoch_metrics(results)
    out.mkdir(parents=True, exist_ok=True)
    board, comparisons = leaderboard(results), compare_to_baseline(results, baseline)
    if not operator_view:
        board = board.assign(trials_run=board["trials_run"].where(board["tuning"] != PRIVATE_SEARCH))
    files = {
        "leaderboard_md": out / "leaderboard.md",
        "leaderboard_csv": out / "leaderboard.csv",
        "comparisons_csv": out / "comparisons.csv",
    }
    markdown = to_markdown(board, comparisons, confounders(results), baseline, operator_view)
    tuned = pipelines(results)
    if not tuned.empty:
        tuned_comparisons = compare_pipelines(results, baseline)
        spread = trial_spread(results, results_dir) if operator_view else None
        markdown += "\n" + pipelines_markdown(tuned, tuned_comparisons, spread, baseline)
        files["pipelines_csv"] = out / "tuned_pipelines.csv"
        files["pipeline_comparisons_csv"] = out / "tuned_pipeline_comparisons.csv"
        (tuned if spread is None else tuned.merge(spread, how="left")).to_csv(files["pipelines_csv"], index=False)
        tuned_comparisons.to_csv(files["pipeline_comparisons_csv"], index=False)
        files["pipelines_png"] = plot_tuned_pipelines(tuned, out / "tuned_pipelines_accuracy_vs_epsilon.png")
    files["leaderboard_md"].write_text(markdown)
    board.to_csv(files["leaderboard_csv"], index=False)
    comparisons.to_csv(files["comparisons_csv"], index=False)
    if not epochs.empty:
        files["accuracy_png"] = plot_per_epoch(epochs, "test_accuracy", "test accuracy", out / "accuracy_per_epoch.png")
        files["epsilon_png"] = plot_per_epoch(epochs, "epsilon", "ε spent", out / "epsilon_per_epoch.png")
    tradeoff = plot_accuracy_vs_epsilon(results, out / "accuracy_vs_epsilon.png")
    if tradeoff is not None:
        files["tradeoff_png"] = tradeoff
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dpbench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=os.environ.get("DPBENCH_RESULTS", "results"), type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RESULTS/report)")
    parser.add_argument("--baseline", default="fixed", help="mechanism every other one is tested against")
    parser.add_argument("--operator-view", action="store_true",
                        help="operator's view: show each private search's K and its trials' test accuracies (never "
                             "publish them: K voids the tuning bound, and the trials are models the search did not "
                             "release)")
    parser.add_argument("--publish", type=Path, default=None, metavar="DIR",
                        help="copy what of RESULTS may be published (the released models' rows and summaries, without "
                             "K, trials or checkpoints) into DIR, adding to what DIR holds, and report DIR")
    args = parser.parse_args(argv)
    if args.publish is not None:
        if args.operator_view:
            parser.error("--publish and --operator-view exclude each other: the operator's view is not for publication")
        try:
            added = publish(args.results, args.publish)
        except PublishError as error:
            raise SystemExit(f"dpbench.report: {error}") from None
        print(f"published {len(added)} new run(s) into {args.publish}")
        args.results = args.publish
    files = write_report(args.results, args.out or args.results / "report", args.baseline, args.operator_view)
    print(files["leaderboard_md"].read_text())
    print("wrote " + ", ".join(str(p) for p in files.values()))


if __name__ == "__main__":
    main()
