"""Turn a structured mechanism into a researcher-form plugin.

The plugin runs the very same kernel (:class:`StructuredPrivatizer`) on the gradients it is given,
so a structured mechanism behaves identically under both contracts; the verifier uses these
adapted built-ins as known-good references. Noise comes from torch's global generator, as it does
in hand-written plugins.
"""

from __future__ import annotations

from typing import Callable

import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.mechanism import Mechanism
from dpbench.privacy.privatizer import StructuredPrivatizer


def as_researcher_plugin(mechanism_factory: Callable[..., Mechanism], **hyperparameters: object) -> type:
    """A class with the researcher-form constructor whose instances run ``mechanism_factory(
    max_grad_norm=..., **hyperparameters)`` through the kernel."""

    class StructuredPlugin:
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
            self.mechanism = mechanism_factory(max_grad_norm=max_grad_norm, **hyperparameters)
            self.noise_multiplier = noise_multiplier
            self.batch_size = batch_size
            self.sampling_rate = min(1.0, batch_size / dataset_size)
            self._privatizer: StructuredPrivatizer | None = None

        def clip_and_noise(self, per_sample_grads: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]:
            if self._privatizer is None:
                self._privatizer = StructuredPrivatizer(
                    self.mechanism,
                    [g.shape[1:] for g in per_sample_grads],
                    self.noise_multiplier,
                    self.batch_size,
                    self.sampling_rate,
                    generator=None,
                    device=per_sample_grads[0].device,
                )
            release = self._privatizer.release([MaterializedGradients(per_sample_grads)], step, epoch)
            return release.gradient

        def get_effective_sigma(self, step: int, epoch: int) -> float:
            return self.noise_multiplier * float(self.mechanism.noise_shape(step, epoch))

    StructuredPlugin.__name__ = StructuredPlugin.__qualname__ = f"{getattr(mechanism_factory, '__name__', 'Mechanism')}Plugin"
    return StructuredPlugin
