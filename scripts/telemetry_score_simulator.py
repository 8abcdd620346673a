"""Simulate the reporting tables, run the 11 benchmark queries and score them against the
published answers of the real 1M-device sample; print every query's scores, the trivial
baselines and the simulated halves noise floor.

    PYTHONPATH=. python scripts/telemetry_score_simulator.py --devices 1000000 [--out DIR] [--truth DIR]

Counts and HAVING > 100 thresholds assume as many devices as the real sample (1,000,000);
smaller runs are not rescaled and fail the count metrics.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dpbench.telemetry.baselines import halves_noise_floor, trivial_baseline_scores
from dpbench.telemetry.query_runner import read_results, run_queries, write_results
from dpbench.telemetry.scoring import format_scores, score_answers
from dpbench.telemetry.simulator import simulate
from dpbench.telemetry.truth import locate_truth_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the tables and answers here")
    parser.add_argument("--truth", type=Path, default=None)
    args = parser.parse_args()
    truth = read_results(locate_truth_dir(args.truth))

    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        report = simulate(args.devices, out / "tables", args.seed)
        start = time.perf_counter()
        answers = run_queries(out / "tables")
        query_seconds = time.perf_counter() - start
        write_results(answers, out / "answers")
        sections = [
            ("simulator against the published answers", score_answers(truth, answers)),
            ("trivial baselines against the published answers", trivial_baseline_scores(truth)),
            ("simulated halves noise floor", halves_noise_floor(out / "tables")),
        ]
    print(f"simulated {args.devices:,d} devices (seed {args.seed}) in {report.seconds:.1f} s; "
          f"queries ran in {query_seconds:.1f} s")
    for title, scores in sections:
        print(f"\n{format_scores(title, scores)}")


if __name__ == "__main__":
    main()
