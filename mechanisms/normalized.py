"""Automatic clipping (Bu et al. 2022): every per-example gradient normalised, sensitivity 1."""

from __future__ import annotations

import math

import torch

from dpbench.privacy.mechanism import Mechanism


class AutomaticClipping(Mechanism):
    """Automatic clipping (AUTO-S of Bu et al. 2022): each example's gradient g becomes g / (||g|| + gamma).

    Privacy argument: every example's contribution has norm ||g|| / (||g|| + gamma) < 1, so one
    example moves the summed gradient by less than 1; the threshold is 1 and the kernel enforces
    factor * norm <= 1 as well. The kernel adds N(0, z^2) to every coordinate (noise z times the
    sensitivity 1) and records (q, z) with sensitivity 1: the flat-clipping Gaussian mechanism with
    C = 1. ``max_grad_norm`` plays no part: it is accepted so that this mechanism fits wherever a
    clipping mechanism does, and ignored (Bu et al. show that a threshold R only rescales the learning
    rate; tune ``train.lr`` instead). ``stability`` is gamma > 0."""

    name = "normalized"

    def __init__(self, max_grad_norm: float | None = None, stability: float = 0.01) -> None:
        super().__init__(1.0)
        if not (math.isfinite(stability) and stability > 0):
            raise ValueError(f"automatic clipping needs stability gamma > 0 (Bu et al. use 0.01), got {stability}")
        self.stability = float(stability)

    def thresholds(self, step: int, epoch: int) -> list[float]:
        return [1.0]

    def clip_factors(self, group_norms: torch.Tensor, thresholds: torch.Tensor, step: int, epoch: int) -> torch.Tensor:
        return 1.0 / (group_norms + self.stability)
