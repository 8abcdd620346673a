"""Gaussian noise for released sums, and how one noise budget is split between two releases.

Releasing a gradient sum (sensitivity S, noise std z_g S) and a statistic sum (sensitivity s, noise
std sigma_s) computed on the same sample is one Gaussian mechanism on the concatenated vector; after
rescaling the statistic so both carry the same noise, its multiplier is
``z = (z_g^-2 + (sigma_s / s)^-2)^-1/2``. The kernel records that z.

Where the noise comes from: by default a ``torch.Generator`` seeded from the run's seed, so a run is
reproducible, and anyone who knows the seed (it is in ``config.yaml`` and ``summary.json``) can
regenerate the noise and subtract it: fine for a benchmark, never for a model someone releases. With
``privacy.secure_noise=true`` every noise tensor is drawn from the operating system's entropy source
(:class:`OSEntropy`), and the Poisson sampler and the key of researcher-form plugins' random streams
(:mod:`dpbench.privacy.plugin_streams`) are seeded from it: nothing about the noise or the batches can be
recomputed from anything the run publishes.
"""

from __future__ import annotations

import math
import os

import numpy as np
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


class OSEntropy:
    """Standard normal samples from ``os.urandom`` (the operating system's cryptographically secure
    generator) by the Box-Muller transform in float64. It has no state to save: a resumed run goes on
    drawing fresh entropy (``get_state``/``set_state`` exist so checkpoints treat it like a generator)."""

    def standard_normal(self, shape: torch.Size, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
        count = math.prod(shape)
        pairs = (count + 1) // 2
        words = np.frombuffer(os.urandom(16 * pairs), dtype=np.uint64).reshape(2, pairs) >> np.uint64(11)
        radius = np.sqrt(-2.0 * np.log((words[0] + 1.0) * 2.0**-53))  # uniform on (0, 1]: log is finite
        angle = 2.0 * math.pi * words[1] * 2.0**-53
        normal = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]
        return torch.from_numpy(normal).reshape(shape).to(device=device, dtype=dtype)

    def get_state(self) -> torch.Tensor:
        return torch.zeros(0, dtype=torch.uint8)

    def set_state(self, state: torch.Tensor) -> None:
        """Nothing to restore: entropy is drawn afresh."""


NoiseSource = torch.Generator | OSEntropy | None
"""A seeded generator, the OS entropy source, or None (torch's global generator)."""


def noise_source(secure: bool, seed: int, device: torch.device | str = "cpu") -> torch.Generator | OSEntropy:
    """The noise source of a run: OS entropy when ``secure``, else a generator seeded with ``seed``."""
    return OSEntropy() if secure else torch.Generator(device=device).manual_seed(seed)


def entropy_seed() -> int:
    """A 63-bit seed from OS entropy, for generators whose output must not follow from the config seed
    (the Poisson sampler of a ``secure_noise`` run: amplification by subsampling assumes the batches are
    secret)."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def standard_normal(
    shape: torch.Size, dtype: torch.dtype, device: torch.device | str, source: NoiseSource
) -> torch.Tensor:
    """I.i.d. N(0, 1) samples of ``shape`` from ``source``."""
    if isinstance(source, OSEntropy):
        return source.standard_normal(shape, dtype, device)
    return torch.randn(shape, generator=source, device=device, dtype=dtype)


def add_gaussian_noise(tensors: list[torch.Tensor], std: float, source: NoiseSource) -> list[torch.Tensor]:
    """Each tensor plus i.i.d. N(0, std^2) noise in every coordinate."""
    return [t + std * standard_normal(t.shape, t.dtype, t.device, source) for t in tensors]
