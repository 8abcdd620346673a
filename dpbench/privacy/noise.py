"""Gaussian noise for released sums, and how one noise budget is split between two releases.

Releasing a gradient sum (sensitivity S, noise std z_g S) and a statistic sum (sensitivity s, noise
std sigma_s) computed on the same sample is one Gaussian mechanism on the concatenated vector; after
rescaling the statistic so both carry the same noise, its multiplier is
``z = (z_g^-2 + (sigma_s / s)^-2)^-1/2``. The kernel records that z.
"""

from __future__ import annotations

import math

import torch

from dpbench.privacy.mechanism import MechanismContractError


def gradient_noise_multiplier(total: float, statistic_multiplier: float) -> float:
    """The gradient's multiplier z_g such that gradient and statistic together are worth ``total``
    (Andrew et al. 2021: z_g = (z^-2 - (sigma_s / s)^-2)^-1/2)."""
    if not total < statistic_multiplier:
        raise MechanismContractError(
            f"the statistic's noise multiplier {statistic_multiplier:.4g} must exceed the total noise multiplier "
            f"{total:.4g}, or nothing is left for the gradient; raise the statistic noise (e.g. count_noise) "
            "or the privacy budget"
        )
    return (total**-2 - statistic_multiplier**-2) ** -0.5


def combined_noise_multiplier(gradient_multiplier: float, statistic_multiplier: float) -> float:
    """Noise multiplier of the joint release of a gradient and a statistic."""
    return 1.0 / math.sqrt(gradient_multiplier**-2 + statistic_multiplier**-2)


def add_gaussian_noise(tensors: list[torch.Tensor], std: float, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Each tensor plus i.i.d. N(0, std^2) noise in every coordinate (``generator=None``: torch's global one)."""
    return [
        t + std * torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype) for t in tensors
    ]
