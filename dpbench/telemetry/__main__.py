"""Command line: simulate tables, run the benchmark queries, score answers, report baselines, and
synthesize tables from a trained telemetry run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dpbench.telemetry.baselines import BASELINE, HALVES, format_margins, halves_noise_floor, trivial_baseline_scores
from dpbench.telemetry.benchmark_queries import QUERIES, select_queries
from dpbench.telemetry.query_runner import read_results, run_queries, write_results
from dpbench.telemetry.schema import SchemaError
from dpbench.telemetry.scoring import QueryScore, format_scores, score_answers, summary_table
from dpbench.telemetry.simulator import simulate
from dpbench.telemetry.truth import locate_truth_dir


def _print_scores(title: str, scores: list[QueryScore], out: Path | None = None) -> None:
    print(format_scores(title, scores))
    if out is not None:
        summary_table(scores).to_csv(out, index=False)


def _simulate(args: argparse.Namespace) -> None:
    report = simulate(args.devices, args.out, args.seed, args.world, args.rows_scale)
    for table, rows in report.rows.items():
        print(f"{table:36s} {report.devices[table]:>9,d} devices {rows:>12,d} rows")
    world = "the calibrated world" if args.world is None else f"world {args.world}"
    heavier = "" if args.rows_scale == 1 else f", {args.rows_scale:g}x rows per device"
    print(f"simulated {args.devices:,d} devices of {world} (seed {args.seed}{heavier}) in {report.seconds:.1f} s "
          f"-> {args.out}")


def _query(args: argparse.Namespace) -> None:
    results = run_queries(args.tables, select_queries(args.queries))
    for path in write_results(results, args.out):
        print(path)


def _score(args: argparse.Namespace) -> None:
    queries = select_queries(args.queries)
    if args.reference_tables:
        reference_name = f"the queries on {args.reference_tables}"
        references = run_queries(args.reference_tables, queries, allow_empty=True)
    else:
        reference_name = str(locate_truth_dir(args.truth))
        references = read_results(locate_truth_dir(args.truth), queries)
    answers = read_results(args.results, queries) if args.results else run_queries(args.tables, queries)
    scores = score_answers(references, answers, queries)
    _print_scores(f"{args.results or args.tables} against {reference_name}", scores, args.out)
    points = {BASELINE: trivial_baseline_scores(references, queries)}
    if args.reference_tables:
        points[HALVES] = halves_noise_floor(args.reference_tables, queries)
    print(format_margins(scores, points))
    if not args.reference_tables:
        print(f"({HALVES}: the real corpus is not here; the capstone's real halves passed 16 of 21 queries. "
              "--reference-tables DIR scores against a corpus of tables and reports its halves too)")


def _baselines(args: argparse.Namespace) -> None:
    queries = select_queries(args.queries)
    _print_scores("keys-and-counts baseline against the published answers",
                  trivial_baseline_scores(read_results(locate_truth_dir(args.truth), queries), queries))
    if args.tables:
        _print_scores(f"keys-and-counts baseline of {args.tables} (its own answers' keys and counts, global means)",
                      trivial_baseline_scores(run_queries(args.tables, queries, allow_empty=True), queries))
        _print_scores(f"halves noise floor of {args.tables} (one half of the devices against the other)",
                      halves_noise_floor(args.tables, queries))


def _synthesize(args: argparse.Namespace) -> None:
    from dpbench.telemetry.dataset import synthesize_run  # torch and hydra only for this command
    from dpbench.telemetry.synthesis import format_reference_points, scores_frame
    utility = synthesize_run(args.run_dir, args.out, args.seed)
    print(scores_frame(utility).to_string(index=False))
    print(format_reference_points(utility))
    print(f"{utility['synthetic_devices']:,d} devices sampled from {args.run_dir} (epoch {utility['epoch']}"
          f"{', parameter EMA' if utility['parameter_ema'] else ''}) -> {utility['synthetic_tables']}; "
          f"scored against {utility['reference']}: {utility['headline']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dpbench.telemetry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    query_names = {"nargs": "*", "choices": list(QUERIES), "metavar": "QUERY",
                   "help": f"queries to run (default all): {', '.join(QUERIES)}"}
    truth = {"type": Path, "default": None, "help": "ground-truth directory (default: $DPBENCH_TELEMETRY_TRUTH or "
                                                    "../shared/telemetry/ground_truth beside the repository)"}

    p = sub.add_parser("simulate", help="write the 13 reporting tables as parquet")
    p.add_argument("--devices", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--world", type=int, default=None, metavar="K",
                   help="draw the simulator's parameters around the calibrated world, deterministically from K "
                        "(default: the calibrated world itself)")
    p.add_argument("--rows-scale", type=float, default=1.0, metavar="S",
                   help="S times the (device, day) rows per device of every per-day table (a heavier corpus)")
    p.set_defaults(run=_simulate)

    p = sub.add_parser("query", help="run the benchmark queries over a directory of tables, write CSVs")
    p.add_argument("--tables", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--queries", **query_names)
    p.set_defaults(run=_query)

    p = sub.add_parser("score", help="score tables (queries are run) or saved answers against the ground truth")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--tables", type=Path, help="directory of parquet tables")
    source.add_argument("--results", type=Path, help="directory of answer CSVs written by 'query'")
    p.add_argument("--truth", **truth)
    p.add_argument("--reference-tables", type=Path, default=None,
                   help="score against the queries on this corpus instead of the published answers (and report "
                        "its halves noise floor beside its keys-and-counts baseline)")
    p.add_argument("--out", type=Path, default=None, help="also write the score table as CSV")
    p.add_argument("--queries", **query_names)
    p.set_defaults(run=_score)

    p = sub.add_parser("baselines", help="keys-and-counts baselines, and those and the halves noise floor of --tables")
    p.add_argument("--truth", **truth)
    p.add_argument("--tables", type=Path, default=None, help="tables whose halves noise floor to report")
    p.add_argument("--queries", **query_names)
    p.set_defaults(run=_baselines)

    p = sub.add_parser("synthesize", help="sample a telemetry run's checkpointed model into tables and score them "
                                          "against the run's input tables")
    p.add_argument("--run", dest="run_dir", type=Path, required=True, help="run directory (holds config.yaml and checkpoint.pt)")
    p.add_argument("--out", type=Path, default=None, help="where to write tables/, answers/ and scores.csv "
                                                          "(default RUN/synthetic)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the run's seed)")
    p.set_defaults(run=_synthesize)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (SchemaError, FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
