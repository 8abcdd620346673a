"""Automatic clipping (Bu et al. 2022): every per-example gradient normalised to norm just below R."""

from __future__ import annotations

import math

from dpbench.privacy.mechanism import Mechanism


class AutomaticClipping(Mechanism):
    """Automatic clipping (AUTO-S of Bu et al. 2022): each example's gradient g becomes R g / (||g|| + gamma).

    Privacy argument: every example's contribution has norm R ||g|| / (||g|| + gamma) < R, so one
    example moves the summed gradient by less than R = ``max_grad_norm``; the threshold is R and the
    kernel enforces factor * norm <= R as well. The kernel adds N(0, (zR)^2) to every coordinate and
    records (q, z) with sensitivity R: the flat-clipping Gaussian mechanism with C = R. Bu et al. show
    that R only rescales the learning rate; keeping it equal to the flat-clipping threshold lets both
    share one learning rate. ``stability`` is gamma > 0."""

    name = "normalized"
    clip_rule = "automatic"  # the kernel's rule: R / (norm + clip_stability), computed for the whole batch

    def __init__(self, max_grad_norm: float, stability: float = 0.01) -> None:
        super().__init__(max_grad_norm)
        if not (math.isfinite(stability) and stability > 0):
            raise ValueError(f"automatic clipping needs stability gamma > 0 (Bu et al. use 0.01), got {stability}")
        self.clip_stability = float(stability)
