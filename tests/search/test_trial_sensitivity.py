"""scripts/trial_sensitivity.py reads the trials of searches and ranks each searched key against accuracy."""

import json
from pathlib import Path

from script_loader import load_script


def write_search(results: Path, name: str, trials: list[tuple[float, float, str, float]]) -> None:
    """A search whose trials have a learning rate, a clipping bound, a choice and a test accuracy."""
    directory = results / "searches" / name
    plan = [{"train.lr": lr, "train.max_grad_norm": bound, "mechanism.split": split} for lr, bound, split, _ in trials]
    directory.mkdir(parents=True)
    (directory / "search.json").write_text(json.dumps({"trials": plan}))
    for index, (lr, bound, split, accuracy) in enumerate(trials):
        run = directory / "runs" / f"t{index}"
        run.mkdir(parents=True)
        config = {"train": {"lr": lr, "max_grad_norm": bound}, "mechanism": {"split": split}}
        (run / "summary.json").write_text(json.dumps({
            "status": "finished", "dataset": "digits", "mechanism": "perlayer", "final_accuracy": accuracy,
            "config": config}))


def test_each_searched_key_is_ranked_against_accuracy(tmp_path):
    script = load_script("trial_sensitivity")
    # accuracy falls as the bound grows and does not depend on the learning rate's order
    write_search(tmp_path, "a", [(0.1, 0.01, "equal", 0.90), (0.4, 0.1, "equal", 0.80),
                                 (0.2, 1.0, "proportional", 0.60)])
    write_search(tmp_path, "b", [(0.3, 0.03, "proportional", 0.85), (0.05, 0.3, "equal", 0.70)])
    table = script.trials(tmp_path)
    assert len(table) == 5 and set(table["train.max_grad_norm"]) == {0.01, 0.1, 1.0, 0.03, 0.3}
    (line,) = [line for line in script.sensitivity(table) if line.startswith("| digits |")]
    assert "| 5 | 80.00 [60.00, 90.00] |" in line
    assert "train.max_grad_norm ρ=-1.00" in line
    assert "mechanism.split: equal 80.0, proportional 72.5" in line


def test_too_few_trials_give_no_correlation(tmp_path):
    script = load_script("trial_sensitivity")
    write_search(tmp_path, "a", [(0.1, 0.01, "equal", 0.90), (0.4, 0.1, "equal", 0.80)])
    (line,) = [line for line in script.sensitivity(script.trials(tmp_path)) if line.startswith("| digits |")]
    assert "ρ" not in line
