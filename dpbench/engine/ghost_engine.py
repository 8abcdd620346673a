"""Per-sample gradients without per-sample backward passes: ghost norms and book-keeping.

One forward pass records every parameterised layer's inputs; one backward pass of the summed
per-example losses gives every layer's output gradient, example by example (the loss of example b
depends only on example b). Only gradients with respect to layer outputs are requested, so the
backward pass skips the weight gradients a non-private step computes. From those two records each
layer's rule (:mod:`dpbench.engine.layer_rules`) gives per-example squared norms (ghost norms, Li et
al. 2022) and the weighted sum of per-example gradients (one product per layer, book-keeping of Bu et
al. 2023), which is all the clipping kernel asks for; per-example gradients are formed only when a
researcher-form plugin asks for them (:meth:`GhostGradients.materialize`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.autograd.graph import GradientEdge, get_gradient_edge
from torch.func import vmap

from dpbench.engine.independence import ExampleMixingError, refuse_batch_mixing_modules
from dpbench.engine.layer_rules import LayerCall, ParameterGradients, Policy, Rule, rule_for, torch_func_rule
from dpbench.engine.per_sample import LossFunction


class GhostEngine:
    """Per-sample gradients of ``loss_fn(model(x[b:b+1]), y[b:b+1])`` for every trainable parameter,
    in the parameter order of ``model.named_parameters()`` (as :class:`FunctorchEngine`).

    Requirements: examples do not interact in the forward pass (BatchNorm and running statistics are
    refused here; :func:`dpbench.engine.independence.check_engine` checks any model empirically before
    training) and no parameter is shared between modules or used outside its module (refused here, or
    caught by the same check, with an error naming the parameter). A layer's output may be
    modified in place afterwards (e.g. ``nn.ReLU(inplace=True)``): gradients are taken at the layer's
    gradient edge, which receives the gradient of the layer's own output. Layers without a rule in
    ``layer_rules`` get their per-example gradients from torch.func, one layer at a time, with a
    warning; that rule verifies at every call that its split of the layer's arguments reproduces the
    layer's batch computation (refused otherwise, naming the layer)."""

    def __init__(self, model: nn.Module, loss_fn: LossFunction, policy: Policy | None = None) -> None:
        refuse_batch_mixing_modules(model)
        self.model = model
        self.loss_fn = loss_fn
        self.policy = policy or Policy()
        owners: dict[int, str] = {}
        self.layers: list[tuple[str, nn.Module, Rule, list[str]]] = []
        for module_name, module in model.named_modules():
            names = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
            if not names:
                continue
            for n in names:
                parameter = getattr(module, n)
                if id(parameter) in owners:
                    raise ValueError(
                        f"GhostEngine: parameter {module_name}.{n} is also {owners[id(parameter)]}; shared "
                        "parameters need per-example gradients summed across modules: use FunctorchEngine"
                    )
                owners[id(parameter)] = f"{module_name}.{n}"
            rule = rule_for(module)
            if rule is None:
                warnings.warn(
                    f"GhostEngine: no ghost-norm rule for layer '{module_name or type(model).__name__}' "
                    f"({type(module).__name__}); its per-sample gradients are materialised with torch.func",
                    stacklevel=2,
                )
                rule = torch_func_rule
            self.layers.append((module_name, module, rule, names))
        position = {f"{m}.{n}" if m else n: (i, n) for i, (m, _, _, names) in enumerate(self.layers) for n in names}
        self.parameter_names = [name for name, p in model.named_parameters() if p.requires_grad]
        self._positions = [position[name] for name in self.parameter_names]

        def example_loss(output: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
            return loss_fn(output.unsqueeze(0), label.unsqueeze(0))

        self._per_example_loss = vmap(example_loss)

    def per_sample_gradients(self, features: torch.Tensor, labels: torch.Tensor) -> GhostGradients:
        records: list[list[tuple[tuple, dict, GradientEdge, _Shape]]] = [[] for _ in self.layers]

        def recorder(index: int) -> Callable:
            def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
                if not isinstance(output, torch.Tensor):
                    raise TypeError(
                        f"GhostEngine: layer '{self.layers[index][0]}' returned {type(output).__name__}; only "
                        "layers returning one tensor are supported: use FunctorchEngine"
                    )
                detached = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
                # The output's gradient edge, not the output: the output's memory is freed as in a
                # non-private step, and the edge still receives the gradient of the layer's own output
                # if the output is later modified in place.
                shape = _Shape(output.shape, output.dtype, output.device)
                records[index].append((detached, kwargs, get_gradient_edge(output), shape))

            return hook

        handles = [
            module.register_forward_hook(recorder(i), with_kwargs=True)
            for i, (_, module, _, _) in enumerate(self.layers)
        ]
        try:
            output = self.model(features)
        finally:
            for handle in handles:
                handle.remove()
        losses = self._per_example_loss(output, labels)
        taps = [edge for calls in records for _, _, edge, _ in calls]
        uncalled = [
            (f"{name}.{n}" if name else n, getattr(module, n))
            for (name, module, _, names), calls in zip(self.layers, records)
            if not calls
            for n in names
        ]
        grads = iter(torch.autograd.grad(losses.sum(), taps + [p for _, p in uncalled], allow_unused=True))
        layer_calls = [
            [LayerCall(args, kwargs, _or_zeros(next(grads), like)) for args, kwargs, _, like in calls]
            for calls in records
        ]
        for name, _ in uncalled:
            if next(grads) is not None:
                raise RuntimeError(
                    f"GhostEngine: parameter '{name}' is used outside its module's forward (e.g. through "
                    "F.linear(x, module.weight) in a parent), so no rule sees it; call the module itself or "
                    "use FunctorchEngine"
                )
        return GhostGradients(self, layer_calls, losses.detach(), features.shape[0])


class _Shape(NamedTuple):
    """What is kept of a layer's output: enough for a zero gradient if the loss does not use it."""

    shape: torch.Size
    dtype: torch.dtype
    device: torch.device


def _or_zeros(grad: torch.Tensor | None, like: _Shape) -> torch.Tensor:
    return torch.zeros(like.shape, dtype=like.dtype, device=like.device) if grad is None else grad


class GhostGradients:
    """One physical batch as the ghost engine recorded it; per-parameter results are built on first
    use by each layer's rule and kept (so :meth:`materialize` may be called repeatedly)."""

    def __init__(
        self, engine: GhostEngine, layer_calls: list[list[LayerCall]], losses: torch.Tensor, batch_size: int
    ) -> None:
        self._engine = engine
        self._layer_calls = layer_calls
        self.losses = losses
        self.batch_size = batch_size
        self._parameters: list[ParameterGradients] | None = None
        self._materialized: list[torch.Tensor] | None = None

    def _per_parameter(self) -> list[ParameterGradients]:
        if self._parameters is None:
            by_layer = []
            for index, (module_name, module, rule, names) in enumerate(self._engine.layers):
                # Each layer's records are released once its rule has taken what it keeps, so the
                # records of layers already converted and their results are not held together.
                calls, self._layer_calls[index] = self._layer_calls[index], []
                if calls:
                    try:
                        by_layer.append(rule(module, calls, names, self._engine.policy))
                    except ExampleMixingError as error:
                        raise ExampleMixingError(f"layer '{module_name or type(module).__name__}': {error}") from error
                else:
                    by_layer.append({n: _Unused(self.batch_size, getattr(module, n)) for n in names})
            self._parameters = [by_layer[layer][name] for layer, name in self._engine._positions]
        return self._parameters

    def squared_norms(self) -> torch.Tensor:
        return torch.stack([p.squared_norms() for p in self._per_parameter()], dim=1)

    def weighted_sum(self, weights: torch.Tensor) -> list[torch.Tensor]:
        return [p.weighted_sum(weights[:, i]) for i, p in enumerate(self._per_parameter())]

    def materialize(self) -> list[torch.Tensor]:
        if self._materialized is None:
            self._materialized = [p.materialize() for p in self._per_parameter()]
        return self._materialized


class _Unused:
    """A parameter of a layer the forward pass never called: zero gradient for every example."""

    def __init__(self, batch_size: int, parameter: torch.Tensor) -> None:
        self.batch_size, self.parameter = batch_size, parameter

    def squared_norms(self) -> torch.Tensor:
        return self.parameter.new_zeros(self.batch_size)

    def weighted_sum(self, weights: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(self.parameter)

    def materialize(self) -> torch.Tensor:
        return self.parameter.new_zeros(self.batch_size, *self.parameter.shape)
