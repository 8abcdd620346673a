"""Pre-flight verification of a researcher-form plugin, without training.

    python -m dpbench.verify path/to/file.py:ClassName [--epochs E] [--seed S] [--draws K] [--set key=value ...]

Runs the plugin over a whole planned schedule (every epoch, compressed to a few steps each), probing one
secret step of every epoch and a share of the others, so a noise schedule that misbehaves only late is
seen. Prints the verdict with its coverage and the evidence; exits 0 only for VERIFIED, 1 for another
verdict, and 2 when the plugin cannot be loaded or run (one paragraph naming the problem; ``--traceback``
shows the whole traceback).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys

from dpbench.errors import DpbenchError
from dpbench.privacy.mechanism import MechanismContractError, PluginError
from dpbench.verification.findings import VERIFIED, VerificationError
from dpbench.verification.preflight import FakeRun, load_class, plugin_factory, preflight

# A plugin that cannot be loaded or run, named with the fix: one paragraph, no traceback.
PLUGIN_PROBLEMS = (DpbenchError, MechanismContractError, PluginError, VerificationError)


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpbench.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("plugin", help="path/to/file.py:ClassName or package.module:ClassName")
    parser.add_argument("--steps", type=int, default=None, help="steps to run (default: every step of every epoch)")
    parser.add_argument(
        "--epochs", type=int, default=60,
        help="epochs of the planned schedule the plugin is built for and run over (default 60, the longest preset)",
    )
    parser.add_argument(
        "--steps-per-epoch", type=int, default=10,
        help="the schedule's compression: steps per epoch (the plugin is built with a matching dataset size)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=16, help="noise draws per probed step")
    parser.add_argument(
        "--probe-rate", type=float, default=0.1, help="share of steps probed besides one step of every epoch"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra constructor argument")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON after the summary")
    parser.add_argument("--traceback", action="store_true", help="show the whole traceback of an error")
    args = parser.parse_args(argv)
    hyperparameters = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got '{item}'")
        hyperparameters[key] = _value(value)
    run = FakeRun(dataset_size=args.steps_per_epoch * FakeRun.batch_size, epochs=args.epochs)
    try:
        cls = load_class(args.plugin)
        result = preflight(
            plugin_factory(cls, run, **hyperparameters), run, seed=args.seed, steps=args.steps,
            probe_rate=args.probe_rate, draws=args.draws, name=getattr(cls, "__name__", args.plugin),
        )
    except PLUGIN_PROBLEMS as error:
        if args.traceback:
            raise
        message = " ".join(str(error).split())
        print(f"dpbench.verify: {type(error).__name__}: {message}\n(--traceback shows the whole traceback)", file=sys.stderr)
        return 2
    print(result.summary())
    if args.json:
        print(json.dumps({"report": result.report.to_dict(), "epsilon": result.epsilon.to_dict()}, indent=2))
    return 0 if result.report.verdict == VERIFIED else 1


if __name__ == "__main__":
    sys.exit(main())
