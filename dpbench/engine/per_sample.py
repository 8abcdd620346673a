"""What an engine returns for one physical batch, and the engine protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from dpbench.engine.norms import squared_norms

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(model output, targets) -> mean loss over the batch``: per-example gradients are taken of it."""


class PerSampleGradients(Protocol):
    """Per-example gradients of one physical batch, possibly never materialised.

    ``squared_norms`` is ``[B, P]``, float64 (:mod:`dpbench.engine.norms`): the squared L2 norm of
    example b's gradient for parameter tensor p. ``weighted_sum(weights)`` with ``weights`` of shape
    ``[B, P]`` returns, for every parameter tensor p, ``sum_b weights[b, p] * grad_b[p]``. ``losses`` is ``[B]``."""

    batch_size: int
    losses: torch.Tensor

    def squared_norms(self) -> torch.Tensor: ...

    def weighted_sum(self, weights: torch.Tensor) -> list[torch.Tensor]: ...

    def materialize(self) -> list[torch.Tensor]: ...


class GradientEngine(Protocol):
    def per_sample_gradients(self, features: torch.Tensor, labels: torch.Tensor) -> PerSampleGradients: ...


class MaterializedGradients:
    """Per-sample gradients held as one ``[B, *param_shape]`` tensor per parameter."""

    def __init__(self, tensors: list[torch.Tensor], losses: torch.Tensor | None = None) -> None:
        self.tensors = tensors
        self.batch_size = tensors[0].shape[0] if tensors else 0
        self.losses = losses if losses is not None else torch.zeros(self.batch_size)

    def squared_norms(self) -> torch.Tensor:
        return torch.stack([squared_norms(g.flatten(start_dim=1)) for g in self.tensors], dim=1)

    def weighted_sum(self, weights: torch.Tensor) -> list[torch.Tensor]:
        return [
            torch.tensordot(weights[:, p].to(g.dtype), g, dims=([0], [0])) for p, g in enumerate(self.tensors)
        ]

    def materialize(self) -> list[torch.Tensor]:
        return self.tensors
