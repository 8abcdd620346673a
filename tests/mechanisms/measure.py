"""Measure what a mechanism's released gradients reveal, treating it as a black box.

A *launch* builds a fresh privatizer (the kernel running a structured mechanism, or a researcher-form
plugin) whose noise stream is fixed by a seed. On a fake model (four tensors: weight, bias, weight,
bias; 212 parameters) it releases a short sequence of steps twice with the same seed: once on fixed
batches, once with one huge-norm example added to the first batch. The difference is the shift that
example causes, exactly (common random numbers). Repeating the sequence with other seeds gives the
noise: per parameter tensor, its covariance across the steps of the sequence. Whitening the shift by
that noise gives the one number privacy depends on: a Gaussian mechanism whose shift has whitened
norm mu is the mechanism of noise multiplier 1/mu, the *effective* multiplier, to compare with the
one the ledger recorded for the step where the example took part. The steps after it matter: a
mechanism that re-releases the example's raw contribution under fresh noise (momentum on raw
gradients) shows a larger whitened shift than one whose later outputs only post-process the noised
release (momentum on noised gradients), although both shift every later output alike.

All quantities are multiplied by the expected batch size, i.e. in units of the summed gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.mechanism import Mechanism
from dpbench.privacy.privatizer import PluginPrivatizer, Release, StructuredPrivatizer

SHAPES = [torch.Size([16, 8]), torch.Size([16]), torch.Size([4, 16]), torch.Size([4])]
EXPECTED_BATCH = 32.0
DATASET_SIZE = 1000
SAMPLING_RATE = EXPECTED_BATCH / DATASET_SIZE
EPOCHS = 4
STEPS_PER_EPOCH = round(DATASET_SIZE / EXPECTED_BATCH)
HUGE = 1e6
# A measured effective multiplier below this fraction of the recorded one flags a violation (correct
# mechanisms read within a few percent of 1 with the default number of draws).
FLAG_RATIO = 0.9

Schedule = Sequence[tuple[int, int]]  # (step, epoch) of each release in a probed sequence


class Privatizer(Protocol):
    def release(self, chunks: list[MaterializedGradients], step: int, epoch: int) -> Release: ...


Launch = Callable[[int], Privatizer]


def kernel(mechanism_factory: Callable[[], Mechanism], noise_multiplier: float) -> Launch:
    """Fresh kernel privatizers for a structured mechanism, noise from a generator seeded per launch."""

    def launch(seed: int) -> Privatizer:
        return StructuredPrivatizer(
            mechanism_factory(),
            SHAPES,
            noise_multiplier,
            EXPECTED_BATCH,
            SAMPLING_RATE,
            generator=torch.Generator().manual_seed(seed),
        )

    return launch


def plugin(plugin_class: type, noise_multiplier: float, max_grad_norm: float) -> Launch:
    """Fresh researcher-form plugins, run as the harness runs them; their random streams keyed by the launch's
    seed."""

    def launch(seed: int) -> Privatizer:
        torch.manual_seed(seed)
        instance = plugin_class(
            max_grad_norm=max_grad_norm,
            noise_multiplier=noise_multiplier,
            n_params=sum(s.numel() for s in SHAPES),
            dataset_size=DATASET_SIZE,
            batch_size=EXPECTED_BATCH,
            epochs=EPOCHS,
            target_epsilon=3.0,
            target_delta=1e-5,
        )
        return PluginPrivatizer(instance, plugin_class.__name__, SHAPES, max_grad_norm, SAMPLING_RATE, seed)

    return launch


def batches(count: int, size: int = 24, seed: int = 0) -> list[list[torch.Tensor]]:
    """``count`` batches of per-sample gradients of moderate norm (realised size != expected size)."""
    generator = torch.Generator().manual_seed(seed)
    return [[0.3 * torch.randn((size, *s), generator=generator) for s in SHAPES] for _ in range(count)]


def huge_example(tensors: Sequence[int] = range(len(SHAPES)), seed: int = 1) -> list[torch.Tensor]:
    """One example's gradient with norm ``HUGE`` in each of ``tensors`` (random directions), 0 elsewhere."""
    generator = torch.Generator().manual_seed(seed)
    example = []
    for index, shape in enumerate(SHAPES):
        direction = torch.randn(shape, generator=generator)
        example.append(HUGE * direction / direction.norm() if index in tensors else torch.zeros(shape))
    return example


def run(launch: Launch, inputs: list[list[torch.Tensor]], schedule: Schedule, seed: int) -> tuple[torch.Tensor, list]:
    """One launch releasing ``inputs[k]`` at ``schedule[k]``: outputs ``[K, P]`` (times the expected
    batch size) and the ledger records."""
    privatizer = launch(seed)
    releases = [
        privatizer.release([MaterializedGradients(grads)], step, epoch)
        for grads, (step, epoch) in zip(inputs, schedule)
    ]
    outputs = torch.stack([torch.cat([g.flatten() for g in r.gradient]) for r in releases])
    return outputs.double() * EXPECTED_BATCH, [r.record for r in releases]


def noise_covariances(launch: Launch, schedule: Schedule, draws: int = 200) -> list[torch.Tensor]:
    """Per parameter tensor, the ``[K, K]`` covariance of one coordinate's output across the sequence,
    estimated over ``draws`` seeds (coordinates of one tensor pooled: their noise is i.i.d.)."""
    inputs = batches(len(schedule))
    samples = torch.stack([run(launch, inputs, schedule, seed)[0] for seed in range(1, draws + 1)])  # [D, K, P]
    centred = samples - samples.mean(dim=0)
    covariances, start = [], 0
    for shape in SHAPES:
        block = centred[:, :, start : start + shape.numel()]  # [D, K, n]
        start += shape.numel()
        pooled = block.permute(0, 2, 1).reshape(-1, len(schedule))
        covariances.append(pooled.T @ pooled / ((draws - 1) * shape.numel()))
    return covariances


@dataclass(frozen=True)
class Measurement:
    recorded_multiplier: float  # what the ledger says for the step the example took part in
    recorded_sensitivity: float
    shift: float  # L2 norm of the first release's shift
    noise_std: tuple[float, ...]  # per parameter tensor, one coordinate's std in the first release
    effective_multiplier: float  # 1 / whitened norm of the shift over the whole sequence

    @property
    def ratio(self) -> float:
        return self.effective_multiplier / self.recorded_multiplier

    @property
    def flagged(self) -> bool:
        return self.ratio < FLAG_RATIO or self.shift > 1.01 * self.recorded_sensitivity


def measure(
    launch: Launch, example: list[torch.Tensor], schedule: Schedule, covariances: list[torch.Tensor]
) -> Measurement:
    """Shift caused by adding ``example`` to the first batch of the sequence, whitened by the noise."""
    inputs = batches(len(schedule))
    neighbour = [[torch.cat([g, e.unsqueeze(0)]) for g, e in zip(inputs[0], example)], *inputs[1:]]
    without, records = run(launch, inputs, schedule, seed=0)
    with_example, _ = run(launch, neighbour, schedule, seed=0)
    shift = with_example - without  # [K, P]
    whitened_squared, start = 0.0, 0
    for shape, covariance in zip(SHAPES, covariances):
        block = shift[:, start : start + shape.numel()]  # [K, n]
        start += shape.numel()
        whitened_squared += float((block * torch.linalg.solve(covariance, block)).sum())
    return Measurement(
        recorded_multiplier=records[0].noise_multiplier,
        recorded_sensitivity=records[0].sensitivity,
        shift=float(shift[0].norm()),
        noise_std=tuple(float(c[0, 0].sqrt()) for c in covariances),
        effective_multiplier=whitened_squared**-0.5,
    )
