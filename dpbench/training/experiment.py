"""One run from a resolved config: build everything, calibrate, train (or resume), write the results.

This is orchestration only: it wires the data, model, mechanism, kernel and loop together and keeps
the run directory's promises (nothing already computed is lost, a finished run is never redone by
accident, a resumed run continues exactly).
"""

from __future__ import annotations

import logging
import math
import random
import subprocess
import time
from dataclasses import asdict
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import dpbench
from dpbench.config_schema import check_config_keys
from dpbench.data import DatasetSplits
from dpbench.data.augmentation import random_crop_flip
from dpbench.engine import FunctorchEngine, GhostEngine, GradientEngine
from dpbench.engine.augmentation_multiplicity import AugmentationMultiplicity
from dpbench.engine.independence import check_engine
from dpbench.errors import DpbenchError
from dpbench.privacy.calibration import TrainingPlan, validate_privacy_target
from dpbench.privacy.noise import entropy_seed, noise_source
from dpbench.search.trial import prepare_trial
from dpbench.privacy.sampler import PoissonSampler
from dpbench.reporting.run_files import RunFiles, append_result_row
from dpbench.runtime import pick_device
from dpbench.training.checkpoint import load_checkpoint, save_checkpoint
from dpbench.training.loop import TrainingState, swapped_in, train
from dpbench.training.plugin_loader import PreparedMechanism, prepare_mechanism
from dpbench.training.schedule import learning_rate_schedule
from dpbench.verification import cross_checked_epsilon, epsilon_check
from dpbench.verification.audit import prepare_audit

log = logging.getLogger("dpbench")

# Keys that change how (or where) a run is executed but not what it computes: a resumed run may change them.
EXECUTION_KEYS = ("resume", "overwrite", "progress", "device", "paths")


class RunDirectoryError(DpbenchError, RuntimeError):
    """The run directory holds work that this invocation would otherwise destroy."""


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict:
    """Run (or resume, or skip as finished) the run of ``cfg`` in ``run_dir``; return its summary."""
    started = time.perf_counter()
    check_config_keys(cfg)
    files = RunFiles(run_dir)
    if files.summary.exists() and not cfg.overwrite:
        log.info("run already finished: %s (overwrite=true to run it again)", files.summary)
        return files.read_summary()
    resume = _check_run_directory(cfg, files)
    files.dir.mkdir(parents=True, exist_ok=True)
    files.config.write_text(OmegaConf.to_yaml(cfg, resolve=True))

    _seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    data = instantiate(cfg.dataset)
    model = instantiate(cfg.model).to(device)
    data, audit = prepare_audit(cfg.audit, data, cfg.seed, cfg.privacy.target_delta)
    releases = data.statistics_releases(model) if hasattr(data, "statistics_releases") else ()
    trial = None
    if cfg.get("tune") is not None:  # a trial of a private search (python -m dpbench.search)
        data, trial = prepare_trial(
            cfg.tune, data, tuple(releases), cfg.privacy.target_epsilon, cfg.privacy.target_delta,
            int(cfg.train.batch_size), int(cfg.train.epochs),
        )
    if trial is None:
        plan = TrainingPlan(data.train_size, float(cfg.train.batch_size), int(cfg.train.epochs), releases)
    else:
        plan = trial.plan
    validate_privacy_target(cfg.privacy.target_epsilon, cfg.privacy.target_delta, plan)
    parameters = [p for p in model.parameters() if p.requires_grad]
    secure = bool(cfg.privacy.secure_noise)
    noise_generator = noise_source(secure, cfg.seed + 1, device)
    if secure:  # researcher-form plugins draw their noise from torch's global generator
        torch.manual_seed(entropy_seed())
    prepared = prepare_mechanism(
        OmegaConf.to_container(cfg.mechanism, resolve=True),
        plan,
        cfg.privacy.target_epsilon,
        cfg.privacy.target_delta,
        [p.shape for p in parameters],
        noise_generator,
        device,
        cfg.privacy.accountant,
        verification=OmegaConf.to_container(cfg.verify, resolve=True),
        seed=cfg.seed,
        calibrate=trial.noise_multiplier if trial else None,
    )
    optimizer = _optimizer(cfg.train, parameters)
    sampler = PoissonSampler(plan.dataset_size, plan.sampling_rate, seed=entropy_seed() if secure else cfg.seed + 2)
    engine = _engine(cfg.train.engine, model, cfg.train.get("augmentation"), data)
    state = TrainingState()
    if resume:
        state = load_checkpoint(
            files.checkpoint, model, optimizer, prepared.mechanism, sampler, noise_generator, prepared.verifier
        )
        log.info("resumed %s after epoch %d (step %d)", run_dir, state.epoch, state.step)
    elif releases:  # statistics of the training data released once, before training, and accounted with it
        for record in data.release_statistics(model, files.dir, noise_source(secure, cfg.seed + 3)):
            state.ledger.append(record)
    log.info(
        "%s on %s (%s): N=%d, q=%.5f, %d steps/epoch x %d epochs, calibrated noise multiplier z=%.4f for "
        "epsilon=%g, delta=%g; device %s",
        prepared.name, data.name, prepared.contract, plan.dataset_size, plan.sampling_rate, plan.steps_per_epoch,
        plan.epochs, prepared.noise_multiplier, cfg.privacy.target_epsilon, cfg.privacy.target_delta, device,
    )

    def on_epoch_end(state: TrainingState) -> None:
        save_checkpoint(
            files.checkpoint, model, optimizer, prepared.mechanism, sampler, noise_generator, state, prepared.verifier
        )
        files.write_metrics(state.epochs)
        row = state.epochs[-1]
        remaining = (plan.epochs - state.epoch) * state.seconds / max(len(state.epochs), 1)
        log.info(
            "epoch %d/%d | %s | eps %.3f (%s) | z %.3f | %.1f s (%.0f samples/s) | ETA %s",
            row["epoch"], plan.epochs, _format_test_metrics(row), row["epsilon"], prepared.verdict(), row["noise_multiplier"],
            row["seconds"], row["samples_per_second"], _duration(remaining),
        )

    state = train(
        model, data, engine, prepared.privatizer, optimizer, sampler, plan,
        lambda ledger: prepared.spent_epsilon(ledger, cfg.privacy.target_delta),
        int(cfg.train.physical_batch_size), device, state, on_epoch_end, progress=bool(cfg.progress),
        nonprivate_diagnostics=bool(cfg.nonprivate_diagnostics),
        parameter_ema=cfg.train.get("parameter_ema"),
        learning_rate=learning_rate_schedule(
            cfg.train.get("lr_schedule", "constant"), float(cfg.train.lr), plan.epochs * plan.steps_per_epoch,
            int(cfg.train.get("warmup_epochs", 0)) * plan.steps_per_epoch,
        ),
    )
    if trial is not None:  # the noised validation score the search selects by, accounted in this trial's ledger
        with swapped_in(parameters, state.parameter_average):
            score, record = trial.release_score(model, noise_source(secure, cfg.seed + 4, device))
        state.ledger.append(record)
    summary = _summary(cfg, run_dir, data.name, plan, prepared, state)
    if trial is not None:
        summary.update(trial.summary(score, prepared.accountable_ledger(state.ledger)))
    if hasattr(data, "utility"):  # datasets whose utility is measured on the trained (averaged, if kept) model's output
        with swapped_in(parameters, state.parameter_average):
            summary["utility"] = data.utility(model, files.dir, cfg.seed)
    if audit is not None:  # an audited run: its training set holds the included canaries (see verification/audit.py)
        summary["audit"] = audit.report(model, summary["epsilon"])
    summary["wall_seconds"] = time.perf_counter() - started
    files.write_summary(summary)
    append_result_row(Path(cfg.paths.results) / "results.jsonl", _result_row(summary))
    log.info(
        "done: %s | epsilon %s (target %g, delta %g) | %s; epsilon basis: %s | %s",
        _format_test_metrics(state.epochs[-1]), _format_epsilon(summary["epsilon"]), summary["target_epsilon"],
        summary["delta"], summary["verdict_detail"], summary["epsilon_basis"], _duration(summary["wall_seconds"]),
    )
    return summary


def _check_run_directory(cfg: DictConfig, files: RunFiles) -> bool:
    """True if the run should resume from its checkpoint."""
    if not files.checkpoint.exists() or cfg.overwrite:
        if cfg.resume:
            log.info("resume=true but %s holds no checkpoint: starting from scratch", files.dir)
        return False
    if not cfg.resume:
        raise RunDirectoryError(
            f"{files.dir} holds an unfinished run (checkpoint.pt); pass resume=true to continue it "
            "or overwrite=true to start it again"
        )
    differing = _differing_keys(
        OmegaConf.to_container(OmegaConf.load(files.config)), OmegaConf.to_container(cfg, resolve=True)
    )
    if differing:
        raise RunDirectoryError(
            f"resume=true, but the config differs from the one the run in {files.dir} started with "
            f"({files.config}) at {', '.join(differing)}; resume with the same settings, or pass overwrite=true"
        )
    return True


def _differing_keys(stored: object, current: object, where: str = "") -> list[str]:
    """The dotted keys whose values differ between two config trees, execution keys (EXECUTION_KEYS) left out."""
    if not (isinstance(stored, dict) and isinstance(current, dict)):
        return [] if stored == current else [f"{where.rstrip('.')} (then {stored!r}, now {current!r})"]
    return [
        key
        for name in sorted(set(stored) | set(current))
        if not (not where and name in EXECUTION_KEYS)
        for key in _differing_keys(stored.get(name, "absent"), current.get(name, "absent"), f"{where}{name}.")
    ]


ENGINES = {"ghost": GhostEngine, "functorch": FunctorchEngine}


def _engine(
    name: str, model: torch.nn.Module, augmentation: DictConfig | None, data: DatasetSplits
) -> GradientEngine:
    """The configured engine, checked on public (test) examples to keep examples independent."""
    if name not in ENGINES:
        raise ValueError(f"unknown train.engine '{name}'; use one of {sorted(ENGINES)}")
    engine = ENGINES[name](model, getattr(model, "loss", F.cross_entropy))
    check_engine(engine, model, data.test_features, data.test_labels)
    if augmentation is None or augmentation.views == 0:
        return engine
    augment = partial(random_crop_flip, padding=augmentation.crop_padding, flip=augmentation.flip)
    return AugmentationMultiplicity(engine, augment, augmentation.views)


def _optimizer(train_cfg: DictConfig, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=train_cfg.lr, momentum=train_cfg.momentum)
    if train_cfg.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=train_cfg.lr)
    raise ValueError(f"unknown optimizer '{train_cfg.optimizer}'; use train.optimizer=sgd or adam")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _summary(cfg: DictConfig, run_dir: Path, dataset: str, plan: TrainingPlan, prepared: PreparedMechanism, state: TrainingState) -> dict:
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
        "noise": "os-entropy" if cfg.privacy.secure_noise else "seeded: reproducible from the seed; never release the model",
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
        "git_commit": _git_commit(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def _result_row(summary: dict) -> dict:
    utility = summary.get("utility")
    nested = ("config", "verification", "utility", "statistics_releases")
    return {key: value for key, value in summary.items() if key not in nested} | {
        "lr": summary["config"]["train"]["lr"],
        "max_grad_norm": summary["config"]["mechanism"].get("max_grad_norm"),
    } | ({f"utility_{key}": utility[key] for key in ("queries_passed", "queries_evaluable", "mean_score")}
         if utility else {})


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _format_test_metrics(row: dict) -> str:
    if "test_accuracy" in row:
        return f"test acc {100 * row['test_accuracy']:.2f}%"
    return " | ".join(f"{key.replace('_', ' ')} {value:.4g}" for key, value in row.items() if key.startswith("test_"))


def _format_epsilon(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.4f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
