"""Per-layer rules of the ghost engine: from what one layer saw in a forward pass (its inputs) and a
backward pass (the gradient of its output), the per-example gradients of its parameters, as norms,
weighted sums or tensors, without a per-example backward pass.

A rule is registered for a module type with :func:`register_rule` and returns one
:class:`ParameterGradients` per trainable parameter it is asked for. Supporting a new layer is one
function here. Every parameter of a layer type without a rule gets :func:`torch_func_rule`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vjp, vmap

from dpbench.engine.independence import TOLERANCE, ExampleMixingError
from dpbench.engine.norms import checked_squared_norms, squared_norms


@dataclass
class LayerCall:
    """One call of a layer in the forward pass: its (detached) inputs and its output's gradient."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output_grad: torch.Tensor


class ParameterGradients(Protocol):
    """The per-example gradients ``g_b`` of one parameter tensor in a batch of B examples."""

    def squared_norms(self) -> torch.Tensor:
        """``[B]``: ``||g_b||^2``."""
        ...

    def weighted_sum(self, weights: torch.Tensor) -> torch.Tensor:
        """``sum_b weights[b] * g_b``, shaped like the parameter."""
        ...

    def materialize(self) -> torch.Tensor:
        """``[B, *parameter_shape]``."""
        ...


@dataclass
class Policy:
    """How a rule chooses between materialising a weight's per-example gradients and ghost norms.

    Materialising costs about ``T * d_in * d_out`` per example and group (one batched weight-gradient
    product) and writes ``d_in * d_out`` numbers that are read again twice; the ghost norm costs
    ``T^2 * (d_in + d_out)`` plus one weighted product ``T * d_in * d_out`` for the sum. So the
    explicit form wins unless ``memory_factor * d_in * d_out >= T^2 * (d_in + d_out)`` (always the case
    for T = 1), or its buffer would exceed ``max_explicit_bytes`` or ``max_explicit_ratio`` times the
    layer's records (its inputs and output gradients, all that the ghost form keeps). The ratio
    bounds the engine's memory by a multiple of the activations a non-private step holds anyway; it
    moves the deep, few-position layers of CNNs to ghost norms (the CIFAR-10 CNN's last two
    convolutions, 5.7 and 8.6 times their records: 216 MiB fewer held at batch 256).

    Convolution gradients are computed ``chunk(...)`` examples at a time: the batched
    convolution's workspace is about twice its result, so chunks of at most ``max_chunk_bytes`` of
    result keep that transient small (measured on the CIFAR-10 CNN's last convolution, batch 256:
    450 MiB of peak growth for 144 MiB of gradients in one call, 218 MiB in chunks of 64 examples)."""

    memory_factor: float = 8.0
    max_explicit_bytes: int = 256 * 2**20
    max_explicit_ratio: float = 4.0
    max_chunk_bytes: int = 32 * 2**20

    def explicit(
        self, batch: int, groups: int, positions: int, d_in: int, d_out: int, itemsize: int, record_bytes: int
    ) -> bool:
        size = batch * groups * d_in * d_out * itemsize
        fits = size <= min(self.max_explicit_bytes, self.max_explicit_ratio * record_bytes)
        return fits and self.memory_factor * d_in * d_out < positions * positions * (d_in + d_out)

    def chunk(self, example_bytes: int) -> int:
        """How many examples to process at once when each needs ``example_bytes`` of results
        (explicit gradients, or unfolded patches for ghost norms)."""
        return max(1, self.max_chunk_bytes // example_bytes)


Rule = Callable[[nn.Module, list[LayerCall], list[str], Policy], dict[str, ParameterGradients]]
_RULES: dict[type[nn.Module], Rule] = {}


def register_rule(*module_types: type[nn.Module]) -> Callable[[Rule], Rule]:
    """Register the decorated function as the rule for exactly these module types (not subclasses,
    which may override ``forward``)."""

    def register(rule: Rule) -> Rule:
        for module_type in module_types:
            _RULES[module_type] = rule
        return rule

    return register


def rule_for(module: nn.Module) -> Rule | None:
    return _RULES.get(type(module))


class ExplicitGradients:
    """Per-example gradients held as one ``[B, *shape]`` tensor."""

    def __init__(self, per_example: torch.Tensor) -> None:
        self.per_example = per_example

    def squared_norms(self) -> torch.Tensor:
        return squared_norms(self.per_example.flatten(start_dim=1))

    def weighted_sum(self, weights: torch.Tensor) -> torch.Tensor:
        flat = self.per_example.reshape(self.per_example.shape[0], -1)
        return (weights.to(flat.dtype) @ flat).view(self.per_example.shape[1:])

    def materialize(self) -> torch.Tensor:
        return self.per_example


class GhostProduct:
    """A weight whose per-example gradient is ``g_b[k] = sum_t e[b,k,t]^T a[b,k,t]`` for each of G
    independent blocks k: ``a`` is ``[B, G, T, d_in]`` (layer inputs, unfolded for convolutions) and
    ``e`` is ``[B, G, T, d_out]`` (output gradients). Norms by the ghost-norm identity
    ``||g_b||^2 = sum_{t,t'} (a_t . a_t')(e_t . e_t')`` (Li et al. 2022), which is
    ``||a||^2 ||e||^2`` for T = 1; the weighted sum is one product ``(w e)^T a`` over batch and
    positions (book-keeping, Bu et al. 2023). ``g_b`` itself is never formed except by
    :meth:`materialize`."""

    def __init__(self, activations: torch.Tensor, backprops: torch.Tensor, shape: torch.Size) -> None:
        self.a, self.e, self.shape = activations, backprops, shape

    def squared_norms(self) -> torch.Tensor:
        if self.a.shape[2] == 1:
            return (squared_norms(self.a) * squared_norms(self.e)).sum(dim=(1, 2))
        return checked_squared_norms(_ghost_identity(self.a, self.e), lambda i: _ghost_identity(
            self.a[i].to(torch.float64), self.e[i].to(torch.float64)))

    def weighted_sum(self, weights: torch.Tensor) -> torch.Tensor:
        w = weights.to(self.e.dtype).view(-1, 1, 1, 1)
        if self.a.shape[1] == 1:
            # the weights scale whichever factor is narrower: one pass over fewer numbers
            e, a = (self.e * w, self.a) if self.e.shape[-1] <= self.a.shape[-1] else (self.e, self.a * w)
            total = e.reshape(-1, e.shape[-1]).T @ a.reshape(-1, a.shape[-1])
        else:
            total = torch.einsum("bgto,bgti->goi", self.e * w, self.a)
        return total.reshape(self.shape)

    def materialize(self) -> torch.Tensor:
        return torch.einsum("bgto,bgti->bgoi", self.e, self.a).reshape(self.a.shape[0], *self.shape)


def _ghost_identity(a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``sum_{t,t'} (a_t . a_t')(e_t . e_t')`` per example, for ``[B, G, T, d]`` inputs."""
    return ((a @ a.transpose(-1, -2)) * (e @ e.transpose(-1, -2))).sum(dim=(1, 2, 3))


def _joined(tensors: list[torch.Tensor], dim: int = 1) -> torch.Tensor:
    """The calls' records joined along positions ``dim``, without copying a single call's."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=dim)


def _total(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum of the per-call contributions, without copying when there is only one call."""
    first, *rest = tensors
    for tensor in rest:
        first = first + tensor
    return first


def _blocks(tensor: torch.Tensor, groups: int) -> torch.Tensor:
    """``[B, T, d]`` -> ``[B, groups, T, d / groups]``."""
    b, t, d = tensor.shape
    return tensor.view(b, t, groups, d // groups).transpose(1, 2)


@register_rule(nn.Linear)
def linear_rule(module: nn.Linear, calls: list[LayerCall], names: list[str], policy: Policy) -> dict:
    """``y = x W^T + b`` on ``[B, ..., d_in]``: every position t contributes ``e_t a_t^T``."""
    batch = calls[0].output_grad.shape[0]
    a = _joined([c.args[0].reshape(batch, -1, module.in_features) for c in calls])
    e = _joined([c.output_grad.reshape(batch, -1, module.out_features) for c in calls])
    grads: dict[str, ParameterGradients] = {}
    if "weight" in names:
        records = (a.numel() + e.numel()) * a.element_size()
        if policy.explicit(batch, 1, a.shape[1], module.in_features, module.out_features, a.element_size(), records):
            grads["weight"] = ExplicitGradients(torch.bmm(e.transpose(1, 2), a))
        else:
            grads["weight"] = GhostProduct(a.unsqueeze(1), e.unsqueeze(1), module.weight.shape)
    if "bias" in names:
        grads["bias"] = ExplicitGradients(e[:, 0] if e.shape[1] == 1 else e.sum(dim=1))  # a view when T = 1
    return grads


def _conv_geometry(module: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The input as the convolution sees it and the zero padding still to apply: non-zero padding
    modes and string paddings ('same' may be asymmetric) are applied to the input here."""
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        return F.pad(x, module._reversed_padding_repeated_twice, mode=mode), (0, 0)
    return x, module.padding


def _conv_per_example(
    module: nn.Conv2d, x: torch.Tensor, padding: tuple[int, int], e: torch.Tensor, chunk: int
) -> torch.Tensor:
    """``[B, *weight.shape]``, computed for at most ``chunk`` examples per call."""
    batch = x.shape[0]
    if batch <= chunk:
        return _conv_weight_gradients(module, x, padding, e)
    per_example = x.new_empty(batch, *module.weight.shape)
    for start in range(0, batch, chunk):
        end = start + chunk
        per_example[start:end] = _conv_weight_gradients(module, x[start:end], padding, e[start:end])
    return per_example


def _conv_weight_gradients(
    module: nn.Conv2d, x: torch.Tensor, padding: tuple[int, int], e: torch.Tensor
) -> torch.Tensor:
    """``[B, *weight.shape]``: the weight gradient of a convolution with the batch folded into the
    groups (B * G groups), so each example gets its own filter gradient in one call (one forward
    convolution when each group has one input channel)."""
    if module.weight.shape[1] == 1:
        return _conv_weight_gradients_by_correlation(module, x, padding, e)
    batch, c_in = x.shape[:2]
    c_out, c_in_group, kh, kw = module.weight.shape
    groups = batch * module.groups
    proto = x.new_empty(batch * c_out, c_in_group, kh, kw)
    _, weight_grad, _ = torch.ops.aten.convolution_backward(
        e.reshape(1, batch * c_out, *e.shape[2:]),
        x.reshape(1, batch * c_in, *x.shape[2:]),
        proto,
        None,
        list(module.stride),
        list(padding),
        list(module.dilation),
        False,
        [0, 0],
        groups,
        [False, True, False],
    )
    return weight_grad.view(batch, *module.weight.shape)


def _conv_weight_gradients_by_correlation(
    module: nn.Conv2d, x: torch.Tensor, padding: tuple[int, int], e: torch.Tensor
) -> torch.Tensor:
    """:func:`_conv_weight_gradients` for one input channel per group (a first layer on one-channel
    images, depthwise convolutions): example b's gradient for output channel o is its input channel
    correlated with ``e[b, o]`` spread out by the stride, sampled every ``dilation`` positions, so all
    of them are one grouped forward convolution with the output gradients as filters (1.5x faster
    than the grouped weight-gradient call on the MNIST CNN's 8x8 first layer, batch 512)."""
    batch, c_in = x.shape[:2]
    c_out, _, kh, kw = module.weight.shape
    if any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    correlation = F.conv2d(
        x.reshape(1, batch * c_in, *x.shape[2:]),
        e.reshape(batch * c_out, 1, *e.shape[2:]),
        stride=module.dilation,
        dilation=module.stride,
        groups=batch * c_in,
    )
    return correlation[0, :, :kh, :kw].reshape(batch, *module.weight.shape)


@register_rule(nn.Conv2d)
def conv2d_rule(module: nn.Conv2d, calls: list[LayerCall], names: list[str], policy: Policy) -> dict:
    """A convolution is a linear layer applied at every output position t to the unfolded input patch,
    block-diagonal over groups."""
    grads: dict[str, ParameterGradients] = {}
    batch = calls[0].output_grad.shape[0]
    c_out, c_in_group, kh, kw = module.weight.shape
    d_in, d_out = c_in_group * kh * kw, c_out // module.groups
    if "weight" in names:
        inputs = [_conv_geometry(module, c.args[0]) for c in calls]
        positions = sum(c.output_grad[0, 0].numel() for c in calls)
        x0 = inputs[0][0]
        records = sum(x.numel() + c.output_grad.numel() for (x, _), c in zip(inputs, calls)) * x0.element_size()
        if policy.explicit(batch, module.groups, positions, d_in, d_out, x0.element_size(), records):
            chunk = policy.chunk(module.weight.numel() * x0.element_size())
            per_example = _total(
                _conv_per_example(module, x, p, c.output_grad, chunk) for (x, p), c in zip(inputs, calls)
            )
            grads["weight"] = ExplicitGradients(per_example)
        else:
            grads["weight"] = ConvGhostGradients(module, inputs, [c.output_grad for c in calls], policy)
    if "bias" in names:
        grads["bias"] = ExplicitGradients(_total(c.output_grad.sum(dim=(2, 3)) for c in calls))
    return grads


class ConvGhostGradients:
    """A convolution's weight in ghost form, keeping only its inputs and output gradients (the
    unfolded input is ``kh * kw`` times larger): norms by the ghost-norm identity (as
    :class:`GhostProduct`) on a chunk of examples' unfolded patches at a time, the weighted sum as one
    batched weight-gradient convolution of the weighted output gradients, per-example gradients (on
    request) in chunks."""

    def __init__(
        self,
        module: nn.Conv2d,
        inputs: list[tuple[torch.Tensor, tuple[int, int]]],
        backprops: list[torch.Tensor],
        policy: Policy,
    ) -> None:
        self.module, self.inputs, self.backprops, self.policy = module, inputs, backprops, policy

    def squared_norms(self) -> torch.Tensor:
        m = self.module
        batch, itemsize = self.backprops[0].shape[0], self.backprops[0].element_size()
        positions = sum(g[0, 0].numel() for g in self.backprops)
        chunk = self.policy.chunk(positions * m.weight[0].numel() * m.groups * itemsize)
        norms = []
        for start in range(0, batch, chunk):
            end = start + chunk
            a = _joined(
                [
                    _blocks(F.unfold(x[start:end], m.kernel_size, m.dilation, p, m.stride).transpose(1, 2), m.groups)
                    for x, p in self.inputs
                ],
                dim=2,
            )
            e = _joined(
                [_blocks(g[start:end].flatten(start_dim=2).transpose(1, 2), m.groups) for g in self.backprops], dim=2
            )
            norms.append(GhostProduct(a, e, m.weight.shape).squared_norms())
        return torch.cat(norms)

    def weighted_sum(self, weights: torch.Tensor) -> torch.Tensor:
        m = self.module
        total = []
        for (x, padding), g in zip(self.inputs, self.backprops):
            scaled = g * weights.to(g.dtype).view(-1, 1, 1, 1)
            _, weight_grad, _ = torch.ops.aten.convolution_backward(
                scaled,
                x,
                m.weight,
                None,
                list(m.stride),
                list(padding),
                list(m.dilation),
                False,
                [0, 0],
                m.groups,
                [False, True, False],
            )
            total.append(weight_grad)
        return _total(total)

    def materialize(self) -> torch.Tensor:
        chunk = self.policy.chunk(self.module.weight.numel() * self.backprops[0].element_size())
        return _total(_conv_per_example(self.module, x, p, g, chunk) for (x, p), g in zip(self.inputs, self.backprops))


def _affine_rule(
    normalized: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    reduce: Callable[[nn.Module, torch.Tensor], torch.Tensor],
) -> Rule:
    """Rule of ``y = x_hat * weight + bias`` with ``x_hat = normalized(x)``: weight gradient
    ``reduce(e * x_hat)``, bias gradient ``reduce(e)``; both are small, so they are held explicitly."""

    def rule(module: nn.Module, calls: list[LayerCall], names: list[str], policy: Policy) -> dict:
        grads: dict[str, ParameterGradients] = {}
        if "weight" in names:
            grads["weight"] = ExplicitGradients(
                _total(reduce(module, c.output_grad * normalized(module, c.args[0])) for c in calls)
            )
        if "bias" in names:
            grads["bias"] = ExplicitGradients(_total(reduce(module, c.output_grad) for c in calls))
        return grads

    return rule


register_rule(nn.LayerNorm)(
    _affine_rule(
        lambda m, x: F.layer_norm(x, m.normalized_shape, eps=m.eps),
        lambda m, t: t.reshape(t.shape[0], -1, *m.normalized_shape).sum(dim=1),
    )
)
register_rule(nn.GroupNorm)(
    _affine_rule(
        lambda m, x: F.group_norm(x, m.num_groups, eps=m.eps),
        lambda m, t: t.reshape(t.shape[0], t.shape[1], -1).sum(dim=2),
    )
)


class EmbeddingGradients:
    """Embedding rows: example b's gradient is ``sum_t e[b,t]`` added into row ``idx[b,t]``, so
    ``||g_b||^2 = sum_{t,t'} [idx_t = idx_t'] (e_t . e_t')`` and the weighted sum is one
    ``index_add`` of the scaled output gradients."""

    def __init__(self, indices: torch.Tensor, backprops: torch.Tensor, shape: torch.Size) -> None:
        self.idx, self.e, self.shape = indices, backprops, shape

    def squared_norms(self) -> torch.Tensor:
        return checked_squared_norms(_embedding_identity(self.idx, self.e), lambda i: _embedding_identity(
            self.idx[i], self.e[i].to(torch.float64)))

    def weighted_sum(self, weights: torch.Tensor) -> torch.Tensor:
        scaled = self.e * weights.to(self.e.dtype).view(-1, 1, 1)
        total = self.e.new_zeros(self.shape)
        return total.index_add_(0, self.idx.flatten(), scaled.reshape(-1, self.shape[1]))

    def materialize(self) -> torch.Tensor:
        batch, rows = self.idx.shape[0], self.shape[0]
        offsets = torch.arange(batch, device=self.idx.device).unsqueeze(1) * rows
        total = self.e.new_zeros(batch * rows, self.shape[1])
        total.index_add_(0, (self.idx + offsets).flatten(), self.e.reshape(-1, self.shape[1]))
        return total.view(batch, *self.shape)


def _embedding_identity(idx: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``sum_{t,t'} [idx_t = idx_t'] (e_t . e_t')`` per example."""
    same_row = (idx.unsqueeze(2) == idx.unsqueeze(1)).to(e.dtype)
    return (same_row * (e @ e.transpose(1, 2))).sum(dim=(1, 2))


@register_rule(nn.Embedding)
def embedding_rule(module: nn.Embedding, calls: list[LayerCall], names: list[str], policy: Policy) -> dict:
    if module.sparse or module.scale_grad_by_freq or module.max_norm is not None:
        return torch_func_rule(module, calls, names, policy)
    batch = calls[0].output_grad.shape[0]
    idx = _joined([c.args[0].reshape(batch, -1) for c in calls])
    e = _joined([c.output_grad.reshape(batch, -1, module.embedding_dim) for c in calls])
    if module.padding_idx is not None:
        e = e * (idx != module.padding_idx).unsqueeze(2).to(e.dtype)
    return {"weight": EmbeddingGradients(idx, e, module.weight.shape)}


def torch_func_rule(module: nn.Module, calls: list[LayerCall], names: list[str], policy: Policy) -> dict:
    """Any layer whose forward treats examples independently: per-example vector-Jacobian products of
    the layer alone (``vmap`` over ``vjp``), differentiating only its own parameters ``names``.
    Tensor positional arguments with the batch as first dimension are split by example; other
    arguments are passed whole to every example.

    That split is a guess (a constant table whose length happens to equal the batch size is split too, and a
    per-example keyword argument is not), and a wrong guess gives example b a gradient that depends on its
    position in the chunk and on the other examples, which breaks the clipping bound. So at every call the
    split is verified against the layer's own batch computation (:func:`_check_split`); the cost is one more
    forward and backward of this layer on the batch, only for layers without a dedicated rule."""
    params = {name: getattr(module, name).detach() for name in names}
    batch = calls[0].output_grad.shape[0]
    total: dict[str, torch.Tensor] = {}
    for call in calls:
        dims = tuple(
            0 if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else None for a in call.args
        )

        def example_vjp(p: dict, args: tuple, e: torch.Tensor, call: LayerCall = call, dims: tuple = dims) -> tuple:
            one = tuple(a.unsqueeze(0) if d == 0 else a for a, d in zip(args, dims))
            output, pullback = vjp(lambda q: functional_call(module, q, one, call.kwargs), p)
            if output.shape != (1, *e.shape):  # shapes are static under vmap: this runs once, while tracing
                raise _split_error(
                    module, batch, dims,
                    f"one example's output has shape {tuple(output.shape)}, not {(1, *e.shape)} like its row of the "
                    "batch's",
                )
            return pullback(e.unsqueeze(0))[0], output

        grads, outputs = vmap(example_vjp, in_dims=(None, dims, 0))(params, call.args, call.output_grad)
        _check_split(module, params, call, dims, outputs, grads)
        total = {name: total[name] + g if name in total else g for name, g in grads.items()}
    return {name: ExplicitGradients(g) for name, g in total.items()}


def _check_split(
    module: nn.Module,
    params: dict[str, torch.Tensor],
    call: LayerCall,
    dims: tuple[int | None, ...],
    outputs: torch.Tensor,
    grads: dict[str, torch.Tensor],
) -> None:
    """The per-example computation with the split ``dims`` must reproduce the layer's batch computation: the
    examples' outputs (``outputs``, ``[B, 1, ...]``) must be the rows of the batch output, and the sum of
    their gradients ``grads`` must be the gradient of the batch output against the same output gradient
    (outputs alone could agree at the current parameters, e.g. all zero, while their derivatives do not).
    Otherwise the per-example gradients are not the examples' own: :class:`ExampleMixingError` names the
    layer and the fix."""
    batch = call.output_grad.shape[0]
    with torch.enable_grad():
        expected, pullback = vjp(lambda q: functional_call(module, q, call.args, call.kwargs), params)
        expected_sum = pullback(call.output_grad)[0]
    problem = _split_problem(batch, outputs, expected, grads, expected_sum)
    if problem is not None:
        raise _split_error(module, batch, dims, problem)


def _split_error(module: nn.Module, batch: int, dims: tuple[int | None, ...], problem: str) -> ExampleMixingError:
    split = ", ".join(f"argument {i}: {'per example' if d == 0 else 'whole'}" for i, d in enumerate(dims))
    return ExampleMixingError(
        f"{type(module).__name__} (the ghost engine's generic rule, batch of {batch}) does not treat examples "
        f"independently with the split it was given ({split}; keyword arguments whole): {problem}. A tensor "
        "argument whose first dimension equals the batch size but is not per-example (a constant table), or a "
        "per-example keyword argument, gives each example a gradient that depends on the others. Pass constants "
        "as module attributes or buffers, not as positional arguments, and per-example tensors positionally; "
        "or use train.engine=functorch"
    )


def _split_problem(
    batch: int,
    outputs: torch.Tensor,
    expected: torch.Tensor,
    grads: dict[str, torch.Tensor],
    expected_sum: dict[str, torch.Tensor],
) -> str | None:
    """What differs between the per-example and the batch computation (relative ``TOLERANCE`` of the
    magnitudes involved: the sum of the examples' absolute gradients bounds the rounding of summing them in
    another order, far below the tolerance in float32), or None."""
    if expected.dim() == 0 or expected.shape[0] != batch or outputs.shape != (batch, 1, *expected.shape[1:]):
        return f"its examples' outputs have shape {tuple(outputs.shape)}, the batch's {tuple(expected.shape)}"
    if expected.numel():
        difference = float((outputs.squeeze(1) - expected).abs().max())
        scale = float(expected.abs().max()) + float(outputs.abs().max()) + 1e-12
        if difference > TOLERANCE * scale:
            return f"its examples' outputs differ from the batch's by up to {difference:.3g} (scale {scale:.3g})"
    for name, g in grads.items():
        if not g.numel():
            continue
        difference = float((g.sum(dim=0) - expected_sum[name]).abs().max())
        scale = float(g.abs().sum(dim=0).max()) + 1e-12
        if difference > TOLERANCE * scale:
            return (
                f"the sum of its examples' gradients for '{name}' differs from the batch's gradient by up to "
                f"{difference:.3g} (scale {scale:.3g})"
            )
    return None
