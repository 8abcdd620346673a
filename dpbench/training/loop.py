"""The fixed DP-SGD training loop. Short enough to audit in one sitting.

Per step: draw a Poisson sample, compute per-sample gradients in physical chunks (an example whose gradient
is not finite is left out: :mod:`dpbench.privacy.finite_examples`), let the privatizer (the kernel, running
the mechanism) release one private gradient, record the release in the ledger, check that the step left the
model's state other than its parameters, and its parameters, exactly as they were
(:class:`~dpbench.engine.independence.ModelStateGuard`: a forward pass that folds private data into a buffer,
attribute or weight would release it with the model, un-noised), take an optimizer step (without step
hooks). Per epoch: evaluate (the workload's test metrics; the guard checks the evaluation too), compute
epsilon from the whole ledger, hand the state to ``on_epoch_end`` (metrics, checkpoint, ETA). The epsilon
printed is ``spent_epsilon`` of the whole ledger: the kernel's, or for a plugin the verified one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from tqdm import tqdm

from dpbench.engine.independence import ModelStateGuard
from dpbench.engine.per_sample import GradientEngine
from dpbench.errors import DpbenchError
from dpbench.privacy.calibration import TrainingPlan
from dpbench.privacy.containment import call_contained
from dpbench.privacy.finite_examples import finite_examples
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.privatizer import Release
from dpbench.privacy.sampler import PoissonSampler
from dpbench.training.optimizer import OptimizerGuard, refuse_step_hooks
from dpbench.training.schedule import LearningRate
from dpbench.workload import Workload


class Privatizer(Protocol):
    def release(self, chunks, step: int, epoch: int) -> Release: ...


@dataclass
class TrainingState:
    """Everything the loop advances; checkpointed after every epoch."""

    epoch: int = 0
    step: int = 0
    ledger: PrivacyLedger = field(default_factory=PrivacyLedger)
    epochs: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    parameter_average: list[torch.Tensor] | None = None


def train(
    model: nn.Module,
    data: Workload,
    engine: GradientEngine,
    privatizer: Privatizer,
    optimizer: torch.optim.Optimizer,
    sampler: PoissonSampler,
    plan: TrainingPlan,
    spent_epsilon: Callable[[PrivacyLedger], float],
    physical_batch_size: int,
    device: torch.device,
    state: TrainingState,
    on_epoch_end: Callable[[TrainingState], None],
    progress: bool = True,
    nonprivate_diagnostics: bool = False,
    parameter_ema: float | None = None,
    learning_rate: LearningRate | None = None,
) -> TrainingState:
    """Train to ``plan.epochs``. With ``parameter_ema`` (a decay), evaluation uses an exponential moving
    average of the parameters after each step, bias-corrected as Adam's moments are (the weights of the
    iterates so far, decaying geometrically, sum to 1: the initialisation carries no weight, so a decay whose
    horizon exceeds a short run still averages the trained iterates); with ``learning_rate`` (``step -> lr``)
    the optimizer's rate follows that schedule. Both are post-processing of released gradients, free of privacy
    cost. The mean training loss is computed from un-noised data, so it is recorded (as
    ``train_loss_nonprivate``) only when ``nonprivate_diagnostics`` asks for it. After every step's release and
    every evaluation the model's state other than its parameters must be what it was before the first step,
    and its parameters what the last optimizer step left (which may not write into a frozen parameter, and
    runs without step hooks): a step or evaluation that changed them raises
    :class:`~dpbench.engine.independence.ExampleMixingError`."""
    if parameter_ema is not None and not 0.0 <= parameter_ema < 1.0:
        raise DpbenchError(f"train.parameter_ema={parameter_ema}: the EMA's decay must be in [0, 1) (e.g. 0.99), "
                           "or null for no average")
    parameters = [p for p in model.parameters() if p.requires_grad]
    if parameter_ema is not None and state.parameter_average is None:
        state.parameter_average = [p.detach().clone() for p in parameters]
    features, labels = data.train_features.to(device), data.train_labels.to(device)
    shapes = [p.shape for p in parameters]
    model_name = type(model).__name__
    model.train()  # the baseline: the state before the first step, held to by every step and evaluation
    for parameter in model.parameters():  # no gradient between steps (a pre-training check may leave one), a
        parameter.grad = None  # frozen parameter's included, which the optimizer does not own
    guard, optimizer_guard = ModelStateGuard(model), OptimizerGuard(optimizer)
    for epoch in range(state.epoch, plan.epochs):
        started = time.perf_counter()
        loss_sum, examples = 0.0, 0
        for _ in tqdm(range(plan.steps_per_epoch), desc=f"epoch {epoch + 1}/{plan.epochs}", leave=False, disable=not progress):
            indices = sampler.sample().to(device)
            # index_select, not features[indices]: the same rows, 5x faster on CPU for a wide table
            x, y = features.index_select(0, indices), labels.index_select(0, indices)
            chunks = (  # the model's code runs on the raw batch: contained as a mechanism's is (no frames, no gc)
                call_contained(model_name, f"its forward and backward at step {state.step}", finite_examples,
                               engine.per_sample_gradients, x[i : i + physical_batch_size],
                               y[i : i + physical_batch_size], shapes, kind="model")
                for i in range(0, len(indices), physical_batch_size)
            )
            release = privatizer.release(chunks, state.step, epoch)
            guard.check(f"training step {state.step} (epoch {epoch + 1})")
            optimizer_guard.check(f"training step {state.step} (epoch {epoch + 1})")
            state.ledger.append(release.record)
            for parameter, gradient in zip(parameters, release.gradient):
                parameter.grad = gradient.to(parameter.dtype)
            if learning_rate is not None:
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(state.step)
            refuse_step_hooks(optimizer)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            refuse_diverged(parameters, state.step)
            guard.accept_update(f"the optimizer step of step {state.step}")
            optimizer_guard.accept_step()
            if state.parameter_average is not None:
                update_average(state.parameter_average, parameters, parameter_ema, state.step + 1)
            loss_sum += release.loss_sum
            examples += len(indices)  # the sample drawn, not the examples kept (a count of the data otherwise)
            state.step += 1
        seconds = time.perf_counter() - started
        state.seconds += seconds
        with swapped_in(parameters, state.parameter_average):
            test_metrics = call_contained(model_name, f"the evaluation after epoch {epoch + 1}", data.evaluate, model,
                                          device, kind="model")
        # evaluation too: a red team's model stashed a training image outside itself during the steps and copied
        # it into its weights in the evaluation's forward, when a new baseline used to be taken
        model.train()  # the mode the baseline was taken in (evaluation switches to eval mode)
        guard.check(f"the evaluation after epoch {epoch + 1}")
        optimizer_guard.check(f"the evaluation after epoch {epoch + 1}")
        diagnostics = {"train_loss_nonprivate": loss_sum / max(examples, 1)} if nonprivate_diagnostics else {}
        state.epochs.append(
            {
                "epoch": epoch + 1,
                **diagnostics,
                **test_metrics,
                "epsilon": spent_epsilon(state.ledger),
                "noise_multiplier": release.record.noise_multiplier,
                "sensitivity": release.record.sensitivity,
                "seconds": seconds,
                "samples_per_second": examples / seconds,
            }
        )
        state.epoch = epoch + 1
        on_epoch_end(state)
    return state


def refuse_diverged(parameters: list[torch.Tensor], step: int) -> None:
    """Stop a run whose parameters are no longer finite (they are post-processing of releases, so stopping
    reveals nothing about any one example, unlike stopping on one example's non-finite gradient)."""
    if not all(bool(torch.isfinite(p).all()) for p in parameters):
        raise DpbenchError(
            f"training diverged at step {step}: a parameter is NaN or infinite after the optimizer step; lower "
            "train.lr (or the clipping threshold), or use a learning-rate schedule with warm-up"
        )


def update_average(average: list[torch.Tensor], parameters: list[torch.Tensor], decay: float, count: int) -> None:
    """Fold the ``count``-th iterate into the bias-corrected EMA: after it, ``average`` is
    ``sum_i decay**(count - i) * p_i / sum_i decay**(count - i)`` over the iterates ``p_1 .. p_count``."""
    weight = (1.0 - decay) / (1.0 - decay**count)
    torch._foreach_lerp_(average, [p.detach() for p in parameters], weight)


@contextmanager
def swapped_in(parameters: list[torch.Tensor], average: list[torch.Tensor] | None) -> Iterator[None]:
    """Temporarily give the model the averaged parameters (nothing happens without an average)."""
    if average is None:
        yield
        return
    current = [p.detach().clone() for p in parameters]
    with torch.no_grad():
        for parameter, value in zip(parameters, average):
            parameter.copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for parameter, value in zip(parameters, current):
                parameter.copy_(value)
