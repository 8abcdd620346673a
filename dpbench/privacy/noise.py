"""Gaussian noise for a released sum, from a generator the harness owns."""

from __future__ import annotations

import torch


def add_gaussian_noise(tensors: list[torch.Tensor], std: float, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Each tensor plus i.i.d. N(0, std^2) noise in every coordinate (``generator=None``: torch's global one)."""
    return [
        t + std * torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype) for t in tensors
    ]
