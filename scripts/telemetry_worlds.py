"""The DP telemetry pipeline over a family of simulated worlds: per world, the synthetic tables' passes (all
metrics and values only) beside the keys-and-counts baseline and the halves noise floor of the same corpus.

    python scripts/telemetry_worlds.py --out /tmp/worlds                 # worlds 1-5, 200k devices, epsilon 4
    python scripts/telemetry_worlds.py --out /tmp/worlds --worlds 6 7 --devices 50000

Each world is one ordinary run (``python -m dpbench dataset=telemetry dataset.world=K ...``) in
``OUT/world_K``; a world whose run has finished is not run again. Each world's run has its own seed
(:func:`run_seed`): the worlds share the release's layout, so under one seed they would share the noise on
every entry, and a query near its threshold would pass or fail on all of them together. Every world's
synthetic tables are scored again here with the current scorer (so runs made under an older one compare),
against the queries on that world's input tables, and the table is printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from dpbench.telemetry.baselines import BASELINE, HALVES
from dpbench.telemetry.benchmark_queries import BENCHMARK
from dpbench.telemetry.query_runner import run_queries
from dpbench.telemetry.scoring import Headline, score_answers
from dpbench.telemetry.synthesis import reference_answers, reference_points

SEEDS_PER_BASE = 1000
"""Run seeds of one ``--seed``: worlds below this number get distinct seeds under every base seed."""


def run_seed(seed: int, world: int) -> int:
    """The seed of world ``world``'s run under base seed ``seed`` (distinct per world and per base seed)."""
    if not 0 <= world < SEEDS_PER_BASE:
        raise ValueError(f"world {world} is out of range: worlds 0-{SEEDS_PER_BASE - 1} have their own seeds")
    return SEEDS_PER_BASE * seed + world


def run_world(world: int, run_dir: Path, devices: int, epsilon: float, delta: float, seed: int) -> None:
    """One telemetry run on world ``world`` (skipped if its summary exists)."""
    if (run_dir / "summary.json").exists():
        return
    command = [sys.executable, "-m", "dpbench", "dataset=telemetry", f"dataset.devices={devices}",
               f"dataset.world={world}", f"privacy.target_epsilon={epsilon}", f"privacy.target_delta={delta}",
               f"seed={seed}", "progress=false", f"hydra.run.dir={run_dir}", "resume=true"]
    subprocess.run(command, check=True)


def world_row(world: int, run_dir: Path) -> dict:
    """The world's synthetic tables scored now, with both reference points and the run's epsilon."""
    summary = json.loads((run_dir / "summary.json").read_text())
    reference_dir = Path(summary["utility"]["reference"])
    references = reference_answers(reference_dir)
    scores = score_answers(references, run_queries(run_dir / "synthetic" / "tables", BENCHMARK, allow_empty=True))
    points = reference_points(reference_dir, references)
    heads = {"dp": Headline.of(scores), **{name: Headline.of(s) for name, s in points.items()}}
    return {"world": world, "seed": summary["seed"], "epsilon": summary["epsilon"],
            **{f"{name}_{key}": getattr(head, key) for name, head in heads.items()
               for key in ("queries_passed", "value_queries_passed", "value_mean_score", "queries_evaluable")},
            "value_fails": [s.query for s in scores if not s.value_passed]}


def markdown(rows: list[dict]) -> str:
    lines = ["| world | passes | values only | value score | keys-and-counts baseline (values) | halves (values) "
             "| ε | fails on values |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['world']} | {r['dp_queries_passed']} of {r['dp_queries_evaluable']} | **{r['dp_value_queries_passed']}**"
            f" | {r['dp_value_mean_score']:.3f} | {r[f'{BASELINE}_queries_passed']} "
            f"({r[f'{BASELINE}_value_queries_passed']}) | {r[f'{HALVES}_queries_passed']} "
            f"({r[f'{HALVES}_value_queries_passed']}) | {r['epsilon']:.3f} | {', '.join(r['value_fails'])} |")
    values = [r["dp_value_queries_passed"] for r in rows]
    margins = [r["dp_value_queries_passed"] - r[f"{BASELINE}_value_queries_passed"] for r in rows]
    lines.append(f"\nValue-only passes: mean {statistics.mean(values):.2f}, min {min(values)} over {len(rows)} worlds; "
                 f"margin over the keys-and-counts baseline on values: min {min(margins):+d}, "
                 f"mean {statistics.mean(margins):+.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory of the runs (OUT/world_K)")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--epsilon", type=float, default=4.0)
    parser.add_argument("--delta", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0, help="base seed; world K runs with seed 1000 * SEED + K")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for world in args.worlds:
        run_dir = args.out / f"world_{world}"
        run_world(world, run_dir, args.devices, args.epsilon, args.delta, run_seed(args.seed, world))
        rows.append(world_row(world, run_dir))
    (args.out / "worlds.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
