"""Noise decay: flat clipping with a data-independent noise schedule, constant within each epoch."""

from __future__ import annotations

import math

from dpbench.privacy.mechanism import Mechanism

SCHEDULES = ("step", "exponential", "linear", "cosine")


class NoiseDecay(Mechanism):
    """Flat clipping with a noise multiplier that follows a fixed schedule over epochs.

    Privacy argument: every example's whole gradient is clipped to C = ``max_grad_norm`` (enforced by
    the kernel), so each step's summed gradient has sensitivity C. The noise multiplier at a step of
    epoch e is z * s(e), with s a schedule fixed before training (it depends on nothing but e and the
    hyper-parameters); the kernel calibrates the scale z so that the planned ledger, every step at its
    own multiplier, spends exactly the target epsilon, and records each step with z * s(e): a sequence
    of subsampled Gaussian mechanisms composed step by step, never summarised by a mean multiplier.

    Schedules of the shape s(e), s(0) = 1, evaluated once per epoch (constant within an epoch):
    ``step``: ``gamma ** (e // every)``; ``exponential``, ``linear``, ``cosine``: from 1 at the first
    epoch to ``end_ratio`` at the last (``epochs``), geometrically, linearly or along a half cosine.
    ``end_ratio < 1`` decays the noise; the total budget is the same, so early epochs get more noise
    than a constant schedule would give them and late epochs less."""

    name = "noise_decay"

    def __init__(
        self,
        max_grad_norm: float,
        epochs: int,
        schedule: str = "exponential",
        end_ratio: float = 0.5,
        gamma: float = 0.5,
        every: int = 10,
    ) -> None:
        super().__init__(max_grad_norm)
        if schedule not in SCHEDULES:
            raise ValueError(f"noise schedule '{schedule}' is unknown; use one of {', '.join(SCHEDULES)}")
        if not (isinstance(epochs, int) and epochs >= 1):
            raise ValueError(
                f"noise schedule needs the number of epochs (>= 1), got {epochs!r}; set epochs: ${{train.epochs}}"
            )
        if schedule == "step":
            if not (math.isfinite(gamma) and gamma > 0):
                raise ValueError(
                    f"step schedule: gamma must be finite and > 0 (the noise factor every {every} epochs), got {gamma}"
                )
            if not (isinstance(every, int) and every >= 1):
                raise ValueError(f"step schedule: every must be a whole number of epochs >= 1, got {every!r}")
        elif not (math.isfinite(end_ratio) and end_ratio > 0):
            raise ValueError(
                f"{schedule} schedule: end_ratio (last epoch's noise over the first's) must be finite and > 0, got "
                f"{end_ratio}; a schedule that reaches zero noise releases gradients in the clear"
            )
        self.epochs = epochs
        self.schedule = schedule
        self.end_ratio = float(end_ratio)
        self.gamma = float(gamma)
        self.every = every

    def noise_shape(self, step: int, epoch: int) -> float:
        if self.schedule == "step":
            return self.gamma ** (epoch // self.every)
        progress = min(1.0, epoch / (self.epochs - 1)) if self.epochs > 1 else 0.0
        if self.schedule == "exponential":
            return self.end_ratio**progress
        if self.schedule == "linear":
            return 1.0 + (self.end_ratio - 1.0) * progress
        return self.end_ratio + (1.0 - self.end_ratio) * (1.0 + math.cos(math.pi * progress)) / 2.0
