"""One run from a resolved config: build everything, calibrate, train (or resume), write the results.

This is orchestration only: it wires the data, model, mechanism, kernel and loop together and keeps
the run directory's promises (nothing already computed is lost, a finished run is never redone by
accident, a resumed run continues exactly; :mod:`dpbench.training.run_directory`). The record it writes
is :mod:`dpbench.training.run_summary`'s, its console lines :mod:`dpbench.training.console`'s.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dpbench.config_schema import check_config_keys
from dpbench.data import DatasetSplits
from dpbench.engine.choice import build_engine
from dpbench.privacy.calibration import TrainingPlan, validate_privacy_target
from dpbench.privacy.containment import check_integrity
from dpbench.privacy.ledger import StepRecord
from dpbench.privacy.noise import entropy_seed, noise_source
from dpbench.privacy.sampler import PoissonSampler
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.reporting.run_files import RunFiles, append_result_row
from dpbench.runtime import pick_device
from dpbench.search.trial import prepare_trial
from dpbench.training.checkpoint import load_checkpoint, save_checkpoint
from dpbench.training.console import format_duration, format_epsilon, format_test_metrics
from dpbench.training.loop import TrainingState, swapped_in, train
from dpbench.training.optimizer import build_optimizer
from dpbench.training.plugin_loader import prepare_mechanism
from dpbench.training.run_directory import RunDirectoryError, check_run_directory
from dpbench.training.run_summary import result_row, run_summary
from dpbench.training.schedule import learning_rate_schedule
from dpbench.verification.audit import prepare_audit
from dpbench.workload import Workload, WorkloadError

log = logging.getLogger("dpbench")

__all__ = ["RunDirectoryError", "run_experiment"]


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict:
    """Run (or resume, or skip as finished) the run of ``cfg`` in ``run_dir``; return its summary."""
    started = time.perf_counter()
    check_config_keys(cfg)
    files = RunFiles(run_dir)
    if files.summary.exists() and not cfg.overwrite:
        log.info("run already finished: %s (overwrite=true to run it again)", files.summary)
        return files.read_summary()
    resume = check_run_directory(cfg, files)
    files.dir.mkdir(parents=True, exist_ok=True)
    files.config.write_text(OmegaConf.to_yaml(cfg, resolve=True))

    _seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    data = _workload(instantiate(cfg.dataset), cfg)
    model = instantiate(cfg.model).to(device)
    data, audit = prepare_audit(cfg.audit, data, cfg.seed, cfg.privacy.target_delta)
    releases = data.statistics_releases(model)
    declared = tuple(release.record() for release in releases)
    trial = None
    if cfg.get("tune") is not None:  # a run of python -m dpbench.search: a trial, or a public proxy's private run
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
        plugin_key=entropy_seed() if secure else cfg.seed,  # researcher-form plugins' random streams
    )
    optimizer = build_optimizer(cfg.train, parameters)
    sampler = PoissonSampler(plan.dataset_size, plan.sampling_rate, seed=entropy_seed() if secure else cfg.seed + 2)
    state = TrainingState()
    if resume:
        state = load_checkpoint(
            files.checkpoint, model, optimizer, prepared.mechanism, sampler, noise_generator, prepared.verifier
        )
        log.info("resumed %s after epoch %d (step %d)", run_dir, state.epoch, state.step)
    elif releases:  # statistics of the training data released once, before training, and accounted with it
        for record in _released(data, model, releases, declared, files.dir, noise_source(secure, cfg.seed + 3)):
            state.ledger.append(record)
    engine = build_engine(  # after the releases: its checks run the model, which may need released statistics
        cfg.train.engine, model, data.loss(model), cfg.train.get("augmentation"), data.test_features, data.test_labels
    )
    log.info(
        "%s on %s (%s): N=%d, q=%.5f, %d steps/epoch x %d epochs, calibrated noise multiplier z=%.4f for "
        "epsilon=%g, delta=%g; device %s",
        prepared.name, data.name, prepared.contract, plan.dataset_size, plan.sampling_rate, plan.steps_per_epoch,
        plan.epochs, prepared.noise_multiplier, cfg.privacy.target_epsilon, cfg.privacy.target_delta, device,
    )

    def on_epoch_end(state: TrainingState) -> None:
        check_integrity(prepared.name, f"the end of epoch {state.epoch}")
        save_checkpoint(
            files.checkpoint, model, optimizer, prepared.mechanism, sampler, noise_generator, state, prepared.verifier
        )
        files.write_metrics(state.epochs)
        row = state.epochs[-1]
        remaining = (plan.epochs - state.epoch) * state.seconds / max(len(state.epochs), 1)
        log.info(
            "epoch %d/%d | %s | eps %.3f (%s) | z %.3f | %.1f s (%.0f samples/s) | ETA %s",
            row["epoch"], plan.epochs, format_test_metrics(row), row["epsilon"], prepared.verdict(),
            row["noise_multiplier"],
            row["seconds"], row["samples_per_second"], format_duration(remaining),
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
    check_integrity(prepared.name, "the end of training")  # before ε is computed and results are written
    summary = run_summary(cfg, run_dir, data.name, plan, prepared, state)
    if trial is not None:
        summary.update(trial.summary(score, prepared.accountable_ledger(state.ledger)))
    with swapped_in(parameters, state.parameter_average):  # measured on the trained (averaged, if kept) model
        utility = data.utility(model, files.dir, cfg.seed)
    if utility is not None:
        summary["utility"] = utility
    if audit is not None:  # an audited run: its training set holds the included canaries (see verification/audit.py)
        summary["audit"] = audit.report(model, summary["epsilon"])
    summary["wall_seconds"] = time.perf_counter() - started
    files.write_summary(summary)
    append_result_row(Path(cfg.paths.results) / "results.jsonl", result_row(summary))
    log.info(
        "done: %s | epsilon %s (target %g, delta %g) | %s; epsilon basis: %s | %s",
        format_test_metrics(state.epochs[-1]), format_epsilon(summary["epsilon"]), summary["target_epsilon"],
        summary["delta"], summary["verdict_detail"], summary["epsilon_basis"], format_duration(summary["wall_seconds"]),
    )
    return summary


def _workload(data: object, cfg: DictConfig) -> Workload:
    """``cfg.dataset``'s object, refused unless it is a :class:`~dpbench.workload.Workload`, and unless it is a
    classification workload where an audit or a search needs one (canaries and validation counts are labels)."""
    if not isinstance(data, Workload):
        raise WorkloadError(
            f"dataset._target_ built a {type(data).__name__}, not a dpbench Workload; a dataset's _target_ must "
            "return a subclass of dpbench.workload.Workload (see docs/workloads.md)"
        )
    needs = [what for what, asked in (("audit", cfg.audit.enabled), ("tune", cfg.get("tune") is not None)) if asked]
    if needs and not isinstance(data, DatasetSplits):
        raise WorkloadError(
            f"{' and '.join(needs)} need a classification workload (labelled examples); {data.name} is a "
            f"{type(data).__name__}: drop the {' and '.join(needs)} settings for this dataset"
        )
    return data


def _released(
    data: Workload, model: torch.nn.Module, releases: tuple[StatisticsRelease, ...],
    declared: tuple[StepRecord, ...], run_dir: Path, generator: torch.Generator,
) -> list[StepRecord]:
    """Make the workload's declared releases; its records must be exactly the ones declared (``declared``, read
    when the releases were, before calibration, which accounted for them: anything else would spend budget the
    plan does not know about)."""
    records = data.release_statistics(model, run_dir, generator)
    if records != list(declared):
        raise RuntimeError(
            f"workload {data.name} declared the releases {[r.name for r in releases]} but recorded "
            f"{[r.mechanism for r in records]} (or with other parameters); a workload's release_statistics must "
            "make exactly the releases statistics_releases declares"
        )
    return records


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
