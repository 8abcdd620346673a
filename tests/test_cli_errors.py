"""``python -m dpbench`` with bad input: one paragraph on stderr, exit 1, the traceback in error.txt, a failed row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpbench import cli
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin

REPOSITORY = Path(__file__).resolve().parent.parent


class RaisingInInitPlugin(FlatClipPlugin):
    def __init__(self, **arguments):
        raise ValueError("this plugin needs a tokenizer")


class RaisingInFirstCallPlugin(FlatClipPlugin):
    def clip_and_noise(self, per_sample_grads, step, epoch):
        raise ZeroDivisionError("the plugin divided by zero")


def target_of(cls: type) -> str:
    return f"mechanism._target_={cls.__module__}.{cls.__qualname__}"


def failed_rows(results: Path) -> list[dict]:
    rows = map(json.loads, (results / "results.jsonl").read_text().splitlines())
    return [row for row in rows if row["status"] == "failed"]


@pytest.mark.slow
def test_an_unknown_key_is_one_paragraph_with_the_nearest_key_and_the_traceback_in_error_txt(tmp_path):
    results = tmp_path / "results"
    finished = subprocess.run(
        [sys.executable, "-m", "dpbench", "+privacy.epsilon=-1", f"paths.results={results}", "train.epochs=1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY), "HYDRA_FULL_ERROR": "1"},
    )
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr and len(finished.stderr.strip().splitlines()) == 2, finished.stderr
    assert "'privacy.epsilon' (did you mean 'privacy.target_epsilon'?)" in finished.stderr
    error_file = results / "runs" / "+privacy.epsilon=-1,train.epochs=1" / "error.txt"
    assert f"(full traceback: {error_file})" in finished.stderr
    assert "Traceback" in error_file.read_text()
    assert [row["error"].split(":")[0] for row in failed_rows(results)] == ["ConfigKeyError"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("mechanism._target_=no_such_module.Plugin", "mechanism._target_=no_such_module.Plugin cannot be imported"),
        ("model._target_=no_such_module.Model", "model._target_=no_such_module.Model cannot be imported"),
        ("model.num_classes=-3", "Error in call to target 'dpbench.models.digits_cnn.DigitsTanhCNN'"),
        (target_of(RaisingInInitPlugin), "this plugin needs a tokenizer"),
        (target_of(RaisingInFirstCallPlugin), "the plugin divided by zero"),
    ],
    ids=["mechanism-not-importable", "model-not-importable", "bad-model-value", "plugin-init", "plugin-first-call"],
)
def test_errors_from_user_input_and_code_are_one_paragraph(tmp_path, monkeypatch, capsys, override, message):
    results = tmp_path / "results"
    quiet = ("hydra/job_logging=none", "hydra/hydra_logging=none")  # no handler left on pytest's captured stderr
    argv = ["dpbench", override, f"paths.results={results}", "train.epochs=1", "progress=false", *quiet]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    paragraph = stderr[stderr.index("dpbench: "):].strip()
    assert message in paragraph and "Traceback" not in paragraph and len(paragraph.splitlines()) == 2, stderr
    (run_dir,) = (results / "runs").iterdir()
    assert "Traceback" in (run_dir / "error.txt").read_text()
    assert len(failed_rows(results)) == 1 and failed_rows(results)[0]["run_dir"] == str(run_dir)
