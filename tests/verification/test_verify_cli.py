"""``python -m dpbench.verify``: the verdict word first, exit code 0 only for VERIFIED, within 30 s."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ZOO = Path(__file__).resolve().parent / "plugin_zoo.py"


@pytest.mark.parametrize(
    "spec,verdict",
    [
        (f"{ZOO}:PerLayerOwnThreshold", "VIOLATION"),
        (f"{ZOO}:RawGradientEMA", "LEAK"),
    ],
)
def test_cli_prints_the_verdict_and_exits_accordingly(spec, verdict):
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dpbench.verify", spec, "--seed", "3"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    seconds = time.perf_counter() - started
    assert done.stdout.splitlines()[0] == verdict, done.stdout + done.stderr
    assert (done.returncode == 0) == (verdict == "VERIFIED")
    assert "epsilon claimed" in done.stdout
    assert seconds <= 30, f"{spec} took {seconds:.1f} s"


def test_cli_exits_zero_for_a_verified_plugin(capsys):
    from dpbench.verify import main

    assert main(["mechanisms/examples/flat_clip_plugin.py:FlatClipPlugin", "--steps", "12"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "VERIFIED"


def test_cli_adapts_a_structured_mechanism_and_takes_hyperparameters(capsys):
    from dpbench.verify import main

    assert main(["mechanisms.adaptive:AdaptiveClipping", "--steps", "6", "--set", "count_noise=5.0"]) == 0
    assert capsys.readouterr().out.startswith("VERIFIED")
