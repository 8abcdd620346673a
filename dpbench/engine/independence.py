"""Per-example gradients must be independent of the other examples, and must add up to the gradient.

DP-SGD's sensitivity argument needs each example's gradient to depend on that example alone: a layer
that mixes examples (BatchNorm normalises by batch statistics) lets one added example move every other
example's gradient, so the release moves by much more than the clipping bound; and BatchNorm's running
statistics are updated from private data without noise. The engines also have to agree with autograd:
a weight used outside its module (tied embeddings through ``F.linear``) gets gradient the layer rules
do not see, and its per-example norms come out wrong.

Two guards, both before the first step:

- :func:`refuse_batch_mixing_modules`: every BatchNorm (any kind, affine or not) and every
  InstanceNorm that tracks running statistics is refused by type, with the fix in the message;
- :func:`check_engine`, because no list of layer types is complete: on a few public (test-set)
  examples, replacing one example must leave every other example's per-example gradient unchanged,
  a forward pass in training mode must leave the model's buffers unchanged, and the per-example
  gradients must sum to autograd's gradient of the summed loss. Any failure names the parameter or
  buffer and the fix.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dpbench.engine.per_sample import GradientEngine

# Relative tolerance of the empirical checks (float32 reductions in other orders stay far below it).
TOLERANCE = 1e-4
CHECK_EXAMPLES = 4


class ExampleMixingError(ValueError):
    """The model (or the engine) lets one example's gradient depend on other examples."""


def refuse_batch_mixing_modules(model: nn.Module) -> None:
    """Refuse module types known to mix examples across the batch."""
    for name, module in model.named_modules():
        where = f"module '{name or type(model).__name__}' ({type(module).__name__})"
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ExampleMixingError(
                f"{where} normalises with statistics of the whole batch, so one example changes every other "
                "example's gradient (and its running statistics are updated from private data without noise): "
                "DP-SGD cannot bound its sensitivity. Replace it with nn.GroupNorm (e.g. model.group_norm_groups=8 "
                "for the built-in CNNs) or nn.LayerNorm"
            )
        if isinstance(module, nn.modules.instancenorm._InstanceNorm) and module.track_running_stats:
            raise ExampleMixingError(
                f"{where} updates running statistics from private data without noise: construct it with "
                "track_running_stats=False"
            )


def check_engine(
    engine: GradientEngine, model: nn.Module, features: torch.Tensor, labels: torch.Tensor
) -> None:
    """The empirical checks of the module docstring, on ``CHECK_EXAMPLES + 1`` examples of ``features``
    (public ones: the test set). Raises :class:`ExampleMixingError`."""
    if features.shape[0] < CHECK_EXAMPLES + 1:
        raise ValueError(f"check_engine needs at least {CHECK_EXAMPLES + 1} examples, got {features.shape[0]}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x, y = features[:CHECK_EXAMPLES].to(device), labels[:CHECK_EXAMPLES].to(device)
    replaced = x.clone()
    replaced[0] = features[CHECK_EXAMPLES].to(device)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        first = _seeded(lambda: engine.per_sample_gradients(x, y))
        moved_buffers = [name for name, b in model.named_buffers() if not torch.equal(b, buffers[name])]
        if moved_buffers:
            raise ExampleMixingError(
                f"a forward pass in training mode changed the buffer(s) {', '.join(moved_buffers)}: running "
                "statistics computed from private data would be released without noise; turn them off "
                "(e.g. track_running_stats=False) or compute them from public data"
            )
        second = _seeded(lambda: engine.per_sample_gradients(replaced, y))
        _compare_others(names, first.materialize(), second.materialize())
        _compare_sum(names, first.weighted_sum(torch.ones(CHECK_EXAMPLES, len(names), device=device)),
                     _seeded(lambda: _autograd_sum(engine, model, x, y)))
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])


def _seeded(call: Callable[[], object]) -> object:
    """``call()`` under a fixed random state (models that draw noise in their forward, e.g. a VAE, draw
    the same noise for the same batch positions), leaving the caller's random state untouched."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        return call()


def _compare_others(names: list[str], first: list[torch.Tensor], second: list[torch.Tensor]) -> None:
    for name, a, b in zip(names, first, second):
        others_a, others_b = a[1:].flatten(start_dim=1), b[1:].flatten(start_dim=1)
        scale = float(others_a.abs().max()) + 1e-12
        moved = (others_a - others_b).abs().amax(dim=1)
        if bool((moved > TOLERANCE * scale).any()):
            raise ExampleMixingError(
                f"replacing one example changed other examples' gradients of parameter '{name}' (by up to "
                f"{float(moved.max()):.3g}, {float(moved.max()) / scale:.2%} of their largest entry): the model mixes "
                "examples across the batch (batch statistics, attention over the batch dimension, a batch-first "
                "layout assumed wrongly), so DP-SGD's sensitivity bound does not hold; make every example's output "
                "depend on that example alone"
            )


def _autograd_sum(engine: GradientEngine, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Autograd's gradient of the summed per-example losses, as the engine defines them."""
    loss_fn = engine.loss_fn
    output = model(x)
    total = sum(loss_fn(output[b : b + 1], y[b : b + 1]) for b in range(x.shape[0]))
    parameters = [p for p in model.parameters() if p.requires_grad]
    return list(torch.autograd.grad(total, parameters, allow_unused=True))


def _compare_sum(names: list[str], summed: list[torch.Tensor], reference: list[torch.Tensor | None]) -> None:
    for name, got, expected in zip(names, summed, reference):
        got = got.detach()
        expected = torch.zeros_like(got) if expected is None else expected.detach()
        scale = float(expected.abs().max()) + float(got.abs().max()) + 1e-12
        error = float((got - expected).abs().max())
        if error > TOLERANCE * scale:
            raise ExampleMixingError(
                f"the per-example gradients of parameter '{name}' do not add up to its gradient (off by "
                f"{error / scale:.2%}): it is probably also used outside its module (tied weights, "
                "F.linear(x, module.weight) in a parent), which the ghost engine's layer rules do not see. "
                "Call the module itself, or use train.engine=functorch"
            )
