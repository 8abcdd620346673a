"""A complete researcher-form plugin: flat clipping with constant Gaussian noise, written by hand.

Copy this file to start a new mechanism of the researcher-facing form. The harness constructs it
with the calibrated ``noise_multiplier`` and the *expected* Poisson batch size, calls
``clip_and_noise`` once per step with the per-sample gradients of the whole logical batch, and
accounts every step with what ``get_effective_sigma`` reports.
"""

from __future__ import annotations

import torch


class FlatClipPlugin:
    """Privacy argument: each example's gradient (all tensors together) is scaled to L2 norm at most
    C = ``max_grad_norm``, so one example moves the sum by at most C; N(0, (sigma C)^2) noise is
    added to every coordinate of the sum, so the step is a Gaussian mechanism with multiplier sigma,
    which is what ``get_effective_sigma`` reports. The sum is divided by the *expected* batch size,
    a public constant, never by the realised one (which depends on the sample)."""

    def __init__(
        self,
        max_grad_norm: float,
        noise_multiplier: float,
        n_params: int,
        dataset_size: int,
        batch_size: float,
        epochs: int,
        target_epsilon: float,
        target_delta: float,
    ) -> None:
        self.max_grad_norm = max_grad_norm
        self.noise_multiplier = noise_multiplier
        self.expected_batch_size = batch_size

    def clip_and_noise(self, per_sample_grads: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]:
        batch = per_sample_grads[0].shape[0]
        # vector_norm and einsum read each per-sample tensor once without writing a [B, ...] temporary:
        # at the telemetry VAE's size every such pass over the batch is 10 GB of memory traffic.
        norms = torch.sqrt(sum(torch.linalg.vector_norm(g.reshape(batch, -1), dim=1).square() for g in per_sample_grads))
        scale = torch.clamp(self.max_grad_norm / (norms + 1e-12), max=1.0)
        noise_std = self.noise_multiplier * self.max_grad_norm
        return [
            (torch.einsum("b,b...->...", scale, g) + noise_std * torch.randn(g.shape[1:], device=g.device))
            / self.expected_batch_size
            for g in per_sample_grads
        ]

    def get_effective_sigma(self, step: int, epoch: int) -> float:
        return self.noise_multiplier
