"""Per-sample gradients with torch.func: ``vmap`` over ``grad`` of a single-example loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from dpbench.engine.independence import refuse_batch_mixing_modules
from dpbench.engine.per_sample import LossFunction, MaterializedGradients


class FunctorchEngine:
    """Materialises per-sample gradients of ``loss_fn(model(x), y)`` for every trainable parameter."""

    def __init__(self, model: nn.Module, loss_fn: LossFunction) -> None:
        refuse_batch_mixing_modules(model)
        self.model = model
        self.loss_fn = loss_fn
        self.parameter_names = [name for name, p in model.named_parameters() if p.requires_grad]

        def example_loss(params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            output = functional_call(model, (params, buffers), (x.unsqueeze(0),))
            return loss_fn(output, y.unsqueeze(0))

        self._grad_and_loss = vmap(grad_and_value(example_loss), in_dims=(None, None, 0, 0))

    def per_sample_gradients(self, features: torch.Tensor, labels: torch.Tensor) -> MaterializedGradients:
        params = {name: p.detach() for name, p in self.model.named_parameters() if p.requires_grad}
        buffers = {name: b.detach() for name, b in self.model.named_buffers()}
        grads, losses = self._grad_and_loss(params, buffers, features, labels)
        return MaterializedGradients([grads[name] for name in self.parameter_names], losses.detach())
