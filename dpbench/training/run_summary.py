"""The record of a finished run: ``summary.json``'s schema and the results table's row."""

from __future__ import annotations

import math
import subprocess
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import dpbench
from dpbench.privacy.calibration import TrainingPlan
from dpbench.search.space import load_space
from dpbench.search.tuning_record import public_proxy_record
from dpbench.training.loop import TrainingState
from dpbench.training.plugin_loader import PreparedMechanism
from dpbench.verification import cross_checked_epsilon, epsilon_check


def run_summary(
    cfg: DictConfig, run_dir: Path, dataset: str, plan: TrainingPlan, prepared: PreparedMechanism, state: TrainingState
) -> dict:
    """The run's record. ``epsilon`` is the verified epsilon: the kernel's for a structured mechanism,
    for a plugin the one accounted with min(claimed, measured) multipliers (None if unbounded).
    ``training_seconds`` is the time spent in the training epochs (over every session of a resumed run);
    ``wall_seconds``, added by :func:`run_experiment`, the whole invocation from its start to the summary
    (data, model, calibration, engine check, training, evaluation, audit and utility; the last session only)."""
    delta = cfg.privacy.target_delta
    if prepared.verifier is None:
        estimate = cross_checked_epsilon(state.ledger, delta, accountant=prepared.accountant)
        claimed, basis = None, "the kernel's ledger"
        verification = None
    else:
        check = epsilon_check(prepared.verifier, state.ledger, delta, prepared.accountant)
        estimate, claimed, basis = check.verified, check.claimed, check.basis
        verification = prepared.verifier.report().to_dict()
    accuracies = [row["test_accuracy"] for row in state.epochs if "test_accuracy" in row] or [None]
    finite = lambda value: value if math.isfinite(value) else None  # noqa: E731  (JSON has no infinity)
    return {
        "status": "finished",
        "dataset": dataset,
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "mechanism": prepared.name,
        "mechanism_class": prepared.mechanism_class,
        "contract": prepared.contract,
        "seed": cfg.seed,
        "noise": (
            "os-entropy" if cfg.privacy.secure_noise else "seeded: reproducible from the seed; never release the model"
        ),
        "final_accuracy": accuracies[-1],
        "best_accuracy": max(accuracies) if accuracies[0] is not None else None,
        "target_epsilon": cfg.privacy.target_epsilon,
        "epsilon": finite(estimate.primary),
        "epsilon_dp_accounting_rdp": finite(estimate.rdp),
        "epsilon_dp_accounting_pld": finite(estimate.pld),
        "epsilon_claimed": finite(claimed.primary) if claimed is not None else None,
        "verdict": prepared.verdict(),
        "verdict_detail": prepared.verdict_detail(),
        "epsilon_basis": basis,
        "verification": verification,
        "delta": delta,
        "noise_multiplier": prepared.noise_multiplier,
        "statistics_releases": [asdict(release) for release in plan.releases],
        "sampling_rate": plan.sampling_rate,
        "expected_batch_size": plan.expected_batch_size,
        "epochs": plan.epochs,
        "steps": state.step,
        "training_seconds": state.seconds,
        "run_dir": str(run_dir),
        "dpbench_version": dpbench.__version__,
        "git_commit": git_commit(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    } | tuning(cfg)


def tuning(cfg: DictConfig) -> dict:
    """How the run's hyper-parameters were tuned, for a run applying a public proxy's choice (``tune=public``
    with no trial): ``tuned_on`` and the statement that no tuning cost is charged to this data. Nothing for an
    untuned run, or for a search's trial (whose summary the trial completes)."""
    tune = cfg.get("tune")
    if tune is None or tune.get("tuned_on") is None or tune.get("trial") is not None:
        return {}
    searched = [dimension.key for dimension in load_space(str(tune.space)).dimensions]
    return public_proxy_record(str(tune.tuned_on), searched, int(tune.trials))


def result_row(summary: dict) -> dict:
    """The results-table row of a run: the summary's flat entries, the learning rate and clipping threshold,
    and each number at the top level of the workload's utility (as ``utility_<key>``)."""
    utility = summary.get("utility") or {}
    nested = ("config", "verification", "utility", "statistics_releases")
    return {key: value for key, value in summary.items() if key not in nested} | {
        "lr": summary["config"]["train"]["lr"],
        "max_grad_norm": summary["config"]["mechanism"].get("max_grad_norm"),
    } | {f"utility_{key}": value for key, value in utility.items()
         if isinstance(value, int | float) and not isinstance(value, bool)}


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
