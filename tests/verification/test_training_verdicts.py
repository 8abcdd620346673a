"""Verdicts of real training runs: a plugin that cheats after its first step cannot end VERIFIED (one
secret step of every epoch is always probed, whatever the overhead cap), the verdict says how many steps
were measured, and the results name the class that actually ran."""

import json
import logging
import re

from dpbench.training.experiment import run_experiment


def test_noise_only_at_the_first_step_is_a_violation_in_a_three_epoch_run(make_config, tmp_path):
    cfg = make_config("mechanism=example_plugin", "mechanism._target_=plugin_zoo.NoiseOnlyAtStepZero", "train.epochs=3")
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["verdict"] == "VIOLATION"
    assert summary["epsilon"] is None  # a step measured without noise: nothing finite can be verified
    verification = summary["verification"]
    per_epoch = summary["steps"] // 3
    assert {p["step"] // per_epoch for p in verification["probes"]} == {0, 1, 2}  # every epoch probed
    assert summary["verdict_detail"].startswith(f"VIOLATION ({verification['steps_measured']} of {summary['steps']}")


def test_noise_only_at_each_epochs_first_step_is_a_violation_with_extra_probes_dropped(make_config, tmp_path):
    """The step of every epoch that is always probed is secret: a plugin that noises each epoch's first step
    only ended VERIFIED when that step was the one, once the overhead cap dropped the extra probes (here,
    with max_overhead 0, every extra probe after the first). It passes now only if the secret step is the
    first in all 8 epochs: (1/6)^8."""
    cfg = make_config("mechanism=example_plugin", "mechanism._target_=plugin_zoo.NoiseOnlyAtEpochStarts",
                      "train.epochs=8", "verify.max_overhead=0")
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["verdict"] == "VIOLATION" and summary["epsilon"] is None


def test_results_name_the_class_that_ran(make_config, tmp_path):
    cfg = make_config("mechanism=example_plugin", "mechanism._target_=plugin_zoo.OverNoised", "train.epochs=1")
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["mechanism"] == "OverNoised" and summary["mechanism_class"] == "plugin_zoo.OverNoised"
    row = json.loads((tmp_path / "results" / "results.jsonl").read_text().splitlines()[-1])
    assert row["mechanism"] == "OverNoised" and row["mechanism_class"] == "plugin_zoo.OverNoised"
    assert summary["verdict_detail"].startswith("VERIFIED (")


def test_the_final_verdict_line_says_each_thing_once(make_config, tmp_path, caplog):
    """The closing line of a leaking run names the verdict once, with its coverage, and the epsilon basis
    without repeating the verdict (it once read 'LEAK: LEAK: ...')."""
    cfg = make_config("mechanism=example_plugin", "mechanism._target_=plugin_zoo.RawGradientEMA", "train.epochs=1")
    with caplog.at_level(logging.INFO, logger="dpbench"):
        summary = run_experiment(cfg, tmp_path / "run")
    assert summary["verdict"] == "LEAK"
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("done:"))
    verdicts = re.findall(r"\b(?:VERIFIED|VIOLATION|LEAK|UNVERIFIED)\b", line)
    assert verdicts == ["LEAK"], line
    assert f"LEAK ({summary['verification']['steps_measured']} of {summary['steps']} steps measured" in line
    assert not re.search(r"\b(\w+): \1\b", line), line


def test_a_builtin_name_is_not_claimed_by_another_class():
    from plugin_zoo import OverNoised

    from dpbench.training.plugin_loader import display_name
    from mechanisms.fixed import FixedClipping

    assert display_name("fixed", "mechanisms.fixed.FixedClipping", FixedClipping) == "fixed"
    assert display_name("fixed", "plugin_zoo.OverNoised", OverNoised) == "OverNoised"
    assert display_name("my_variant", "plugin_zoo.OverNoised", OverNoised) == "my_variant"
    impostor = type("fixed", (OverNoised,), {"__module__": "elsewhere"})
    assert display_name(None, "elsewhere.fixed", impostor) == "elsewhere.fixed"
