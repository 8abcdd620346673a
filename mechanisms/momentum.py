"""Momentum on the released gradient: heavy-ball or exponential moving average, as post-processing."""

from __future__ import annotations

import torch

from dpbench.privacy.mechanism import Mechanism

KINDS = ("heavy_ball", "ema")


class NoisyMomentum(Mechanism):
    """Flat clipping and constant noise, then momentum over the *noised* gradients.

    Privacy argument: every example's whole gradient is clipped to C = ``max_grad_norm`` and the kernel
    adds N(0, (zC)^2) to the sum, recording (q, z) per step: the flat-clipping Gaussian mechanism.
    The momentum buffer is updated in ``postprocess``, which only ever sees released (noised, averaged)
    gradients, so the buffer and every later output are functions of past releases: post-processing,
    with no privacy cost. (Momentum on raw clipped gradients would release each example again at every
    later step without fresh accounting.)

    ``heavy_ball``: v <- beta v + g; ``ema``: v <- beta v + (1 - beta) g (same scale as g). The buffer
    is an attribute, so checkpoints carry it. The optimizer's own momentum (``train.momentum``) still
    applies on top; set it to 0 to study this one alone."""

    name = "momentum"

    def __init__(self, max_grad_norm: float, beta: float = 0.9, kind: str = "ema") -> None:
        super().__init__(max_grad_norm)
        if kind not in KINDS:
            raise ValueError(f"momentum kind '{kind}' is unknown; use one of {', '.join(KINDS)}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"momentum beta must be in [0, 1), got {beta}")
        self.beta = float(beta)
        self.kind = kind
        self.velocity: list[torch.Tensor] | None = None

    def postprocess(self, gradient: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]:
        weight = 1.0 if self.kind == "heavy_ball" else 1.0 - self.beta
        if self.velocity is None:
            self.velocity = [weight * g for g in gradient]
        else:  # a resumed buffer is loaded on the CPU
            self.velocity = [self.beta * v.to(g.device) + weight * g for v, g in zip(self.velocity, gradient)]
        return [v.clone() for v in self.velocity]
