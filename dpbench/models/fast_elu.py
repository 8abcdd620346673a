"""ELU with the same values and gradients as ``nn.ELU`` (alpha = 1), computed through ``exp``.

On this project's CPUs, torch 2.14's ELU kernel evaluates ``expm1`` without vectorisation: 12.4 ms
for a 4096 x 512 activation, where ``exp`` takes 1.4 ms. The telemetry VAEs apply four ELUs per
forward pass, so ELU alone was a fifth of their step. ``max(x, exp(min(x, 0)) - 1)`` is ELU because
``e^x - 1 >= x``, and ``exp(min(x, 0)) - 1`` differs from ``expm1`` by at most 2.4e-7 near 0; the
backward pass is ELU's own (``elu_backward`` from the result).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class _ExpELU(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        # e^x - 1 >= x for every x, with equality at 0 only: the maximum picks x above 0, e^x - 1 below
        return torch.maximum(torch.clamp(x, max=0.0).exp_().sub_(1.0), x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (result,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, result)


class FastELU(nn.Module):
    """Drop-in for ``nn.ELU()`` (alpha = 1); see the module docstring."""

    def forward(self, x: Tensor) -> Tensor:
        return _ExpELU.apply(x)
