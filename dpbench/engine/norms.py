"""Per-example squared norms that stay exact to rounding at any scale.

The clipping bound is only as good as the norms it divides by. In float32 a gradient with entries of
1e-24 has a squared norm of 0 (underflow) and one with entries of 1e20 an infinite one; ghost norms
multiply two such quantities. Every squared norm the engines hand the kernel is therefore float64,
and every example whose float32 computation left the range in which float32 is exact to rounding
(norms outside [1e-15, 1e15], or not finite) is recomputed from its float32 inputs in float64. The fast
path is unchanged for the norms training meets; the rare example at the edges costs one float64 pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SAFE_NORMS = (1e-15, 1e15)
"""Norms computed in float32 inside this open interval are trusted (their squares are normal floats)."""


def _unsafe(norms: torch.Tensor) -> torch.Tensor:
    return ~((norms > SAFE_NORMS[0]) & (norms < SAFE_NORMS[1]))


def squared_norms(rows: torch.Tensor) -> torch.Tensor:
    """float64 squared L2 norms over the last dimension of ``rows``."""
    norms = torch.linalg.vector_norm(rows, dim=-1)
    result = norms.to(torch.float64).square()
    unsafe = _unsafe(norms)
    if bool(unsafe.any()):
        result[unsafe] = torch.linalg.vector_norm(rows[unsafe].to(torch.float64), dim=-1).square()
    return result


def checked_squared_norms(
    computed: torch.Tensor, recompute: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Per-example squared norms ``[B]`` computed by some identity in the inputs' dtype, as float64, with
    every example outside the trusted range recomputed by ``recompute(indices)`` (float64 inputs)."""
    result = computed.to(torch.float64)
    unsafe = _unsafe(result.clamp_min(0).sqrt())
    if bool(unsafe.any()):
        indices = unsafe.nonzero().flatten()
        result[indices] = recompute(indices).to(torch.float64)
    return result
