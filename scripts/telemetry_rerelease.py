"""A paired comparison of marginal-release designs on simulated worlds: release a finished run's marginals
again with the code at hand and a fixed noise seed, synthesize from the run's trained model, and score.

    python scripts/telemetry_rerelease.py /tmp/worlds/world_1 /tmp/worlds/world_2 --out /tmp/rerelease

Run it from the directory the runs were started in: a simulated corpus's data root is relative to it.

Training does not read the marginals (synthesis does), so two versions of the release code run on the same
trained models with the same ``--release-seed`` differ only in the release's design: their difference in
passes is not the noise of training or of another release draw. A second release of the same rows spends its
epsilon again, so this is for simulated corpora only: a run over a user's tables (``dataset.path``) is refused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dpbench.reporting.run_files import RunFiles
from dpbench.telemetry.dataset import load_telemetry, synthesize_run
from dpbench.telemetry.marginals import RELEASED_FILE, marginals_release, release_marginals, save_released


def rerelease(run_dir: Path, out_dir: Path, release_seed: int) -> dict:
    """The run's model matched to a new release of its training rows' marginals, scored (see the module)."""
    data = OmegaConf.load(RunFiles(run_dir).config).dataset
    if data.get("path") is not None:
        raise SystemExit(f"{run_dir} trained on the tables in {data.path}: releasing their marginals again would "
                         "spend their privacy budget twice; this script is for simulated worlds only")
    if data.get("marginals_noise_multiplier") is None:
        raise SystemExit(f"{run_dir} released no marginals (dataset.marginals_noise_multiplier=null): nothing to redo")
    splits = load_telemetry(None, data.devices, data.simulation_seed, data.root, data.test_fraction,
                            data.split_seed, data.marginals_noise_multiplier, data.get("world"))
    release = marginals_release(data.marginals_noise_multiplier)
    noisy_sum = release_marginals(splits.train_features, release, torch.Generator().manual_seed(release_seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    save_released(out_dir / RELEASED_FILE, noisy_sum, splits.train_size, release)
    utility = synthesize_run(run_dir, out_dir / "synthetic", released=out_dir / RELEASED_FILE)
    return {"run": str(run_dir), "world": data.get("world"), "bound": release.bound,
            "queries_passed": utility["queries_passed"], "value_queries_passed": utility["value_queries_passed"],
            "value_mean_score": utility["value_mean_score"],
            "value_fails": [name for name, query in utility["per_query"].items() if not query["value_passed"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished telemetry run directories")
    parser.add_argument("--out", type=Path, required=True, help="where each run's release and synthesis go")
    parser.add_argument("--release-seed", type=int, default=1000)
    args = parser.parse_args(argv)
    rows = []
    for index, run_dir in enumerate(args.runs):
        rows.append(rerelease(run_dir, args.out / f"{index}_{run_dir.name}", args.release_seed))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print("| run | world | passes | values only | value score | fails on values |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['world']} | {r['queries_passed']} | **{r['value_queries_passed']}** | "
              f"{r['value_mean_score']:.3f} | {', '.join(r['value_fails'])} |")
    values = [r["value_queries_passed"] for r in rows]
    print(f"\nValue-only passes: mean {statistics.mean(values):.2f}, min {min(values)} over {len(rows)} runs "
          f"(release seed {args.release_seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
