"""``python -m dpbench.verify``: the verdict word first, exit code 0 only for VERIFIED."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ZOO = Path(__file__).resolve().parent / "plugin_zoo.py"


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec,verdict",
    [
        (f"{ZOO}:PerLayerOwnThreshold", "VIOLATION"),
        (f"{ZOO}:RawGradientEMA", "LEAK"),
        (f"{ZOO}:UnpaidUncentredCount", "VIOLATION"),
    ],
)
def test_cli_prints_the_verdict_and_exits_accordingly(spec, verdict):
    done = subprocess.run(
        [sys.executable, "-m", "dpbench.verify", spec, "--seed", "3"], cwd=REPO, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert done.stdout.splitlines()[0].split()[0] == verdict, done.stdout + done.stderr
    assert (done.returncode == 0) == (verdict == "VERIFIED")
    assert "epsilon claimed" in done.stdout


def test_cli_exits_zero_for_a_verified_plugin(capsys):
    from dpbench.verify import main

    assert main(["mechanisms/examples/flat_clip_plugin.py:FlatClipPlugin", "--steps", "12"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[0] == "VERIFIED"


def test_cli_adapts_a_structured_mechanism_and_takes_hyperparameters(capsys):
    from dpbench.verify import main

    assert main(["mechanisms.adaptive:AdaptiveClipping", "--steps", "6", "--set", "count_noise=5.0"]) == 0
    assert capsys.readouterr().out.startswith("VERIFIED")


@pytest.mark.slow
def test_cli_runs_the_whole_schedule_so_a_late_shortfall_is_seen(capsys):
    """A noise schedule normalised to its mean looks right over a short run and is caught late in the
    default whole schedule (60 epochs, one step of every epoch probed)."""
    from dpbench.verify import main

    spec = f"{ZOO}:StepDecayReportedAsMean"
    assert main([spec, "--epochs", "2", "--steps-per-epoch", "31", "--probe-rate", "1"]) == 0
    capsys.readouterr()
    assert main([spec]) == 1
    out = capsys.readouterr().out
    assert out.startswith("VIOLATION (") and "of 600 steps measured" in out


def test_a_plugin_that_raises_is_named_with_the_call_and_its_arguments(tmp_path, capsys):
    from dpbench.privacy.mechanism import PluginError
    from dpbench.verify import main

    plugin = tmp_path / "broken.py"
    plugin.write_text(
        "class Broken:\n"
        "    def __init__(self, max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs,\n"
        "                 target_epsilon, target_delta):\n"
        "        raise KeyError('schedule')\n"
        "    def clip_and_noise(self, grads, step, epoch): ...\n"
        "    def get_effective_sigma(self, step, epoch): return 1.0\n"
    )
    assert main([f"{plugin}:Broken", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "plugin 'Broken' raised KeyError: 'schedule' in __init__(max_grad_norm=1.0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2
    with pytest.raises(PluginError, match="raised KeyError"):
        main([f"{plugin}:Broken", "--epochs", "1", "--traceback"])


@pytest.mark.parametrize(
    "spec,problem",
    [
        ("no_colon_here", "is not PATH.py:ClassName"),
        ("{tmp}/missing.py:Plugin", "no plugin file"),
        ("{tmp}/syntax.py:Plugin", "importing .*syntax.py raised SyntaxError"),
        ("{tmp}/syntax_free.py:Missing", "defines no 'Missing'"),
        ("no_such_module_xyz:Plugin", "importing no_such_module_xyz raised ModuleNotFoundError"),
    ],
)
def test_a_plugin_that_cannot_be_loaded_is_one_paragraph_and_exit_2(tmp_path, capsys, spec, problem):
    from dpbench.verify import main

    (tmp_path / "syntax.py").write_text("class Plugin(:\n")
    (tmp_path / "syntax_free.py").write_text("class Plugin:\n    pass\n")
    assert main([spec.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.search(problem, err) and "Traceback" not in err, err
