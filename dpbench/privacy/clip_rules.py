"""The clipping rules the kernel computes itself, vectorised over the batch, for a structured mechanism that
names one instead of overriding the raw-data hook (:mod:`dpbench.privacy.clipping`): no mechanism code sees
the norms, so nothing needs to be isolated or evaluated example by example.

Each rule maps one example's group norms (and the thresholds) to its factors or its statistic, row by row:
an example's value depends on its own norms only, as the kernel's bound requires."""

from __future__ import annotations

import torch

CLIP_RULES = ("flat", "automatic")
"""``flat``: factor min(1, C_g / norm). ``automatic`` (Bu et al. 2022, AUTO-S): C_g / (norm + stability),
every contribution of norm below C_g."""
STATISTIC_RULES = ("unclipped",)
"""``unclipped``: +1/2 for an example whose every group norm is within its threshold, -1/2 otherwise (the
centred count of unclipped examples of adaptive clipping, Andrew et al. 2021)."""


def rule_factors(rule: str, stability: float, group_norms: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Factors ``[B, G]`` of ``rule`` for the norms ``[B, G]`` and thresholds ``[G]``."""
    if rule == "flat":
        return torch.clamp(thresholds / group_norms.clamp_min(1e-12), max=1.0)
    if rule == "automatic":
        return thresholds / (group_norms + stability).clamp_min(1e-300)
    raise ValueError(f"unknown clip_rule {rule!r}: use one of {', '.join(CLIP_RULES)}")


def rule_statistic(rule: str | None, group_norms: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Per-example statistic ``[B]`` of ``rule``, in [-1/2, 1/2]."""
    if rule == "unclipped":
        return (group_norms <= thresholds).all(dim=1).to(group_norms.dtype) - 0.5
    raise ValueError(f"unknown statistic_rule {rule!r}: use one of {', '.join(STATISTIC_RULES)}")
