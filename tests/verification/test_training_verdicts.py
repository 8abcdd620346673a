"""Verdicts of real training runs: a plugin that cheats after its first step cannot end VERIFIED (the
first step of every epoch is always probed, whatever the overhead cap), the verdict says how many steps
were measured, and the results name the class that actually ran."""

import json

from dpbench.training.experiment import run_experiment


def test_noise_only_at_the_first_step_is_a_violation_in_a_three_epoch_run(make_config, tmp_path):
    cfg = make_config("mechanism=example_plugin", "mechanism._target_=plugin_zoo.NoiseOnlyAtStepZero", "train.epochs=3")
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["verdict"] == "VIOLATION"
    assert summary["epsilon"] is None  # a step measured without noise: nothing finite can be verified
    verification = summary["verification"]
    first_steps = {0, summary["steps"] // 3, 2 * summary["steps"] // 3}
    assert first_steps <= {p["step"] for p in verification["probes"]}
    assert summary["verdict_detail"].startswith(f"VIOLATION ({verification['steps_measured']} of {summary['steps']}")


def test_results_name_the_class_that_ran(make_config, tmp_path):
    cfg = make_config("mechanism=example_plugin", "mechanism._target_=plugin_zoo.OverNoised", "train.epochs=1")
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["mechanism"] == "OverNoised" and summary["mechanism_class"] == "plugin_zoo.OverNoised"
    row = json.loads((tmp_path / "results" / "results.jsonl").read_text().splitlines()[-1])
    assert row["mechanism"] == "OverNoised" and row["mechanism_class"] == "plugin_zoo.OverNoised"
    assert summary["verdict_detail"].startswith("VERIFIED (")
