"""Per-example gradients must be independent of the other examples, and must be the gradients autograd gives.

DP-SGD's sensitivity argument needs each example's gradient to depend on that example alone: a layer
that mixes examples (BatchNorm normalises by batch statistics) lets one added or replaced example move
every other example's gradient, so the release moves by much more than the clipping bound; and
BatchNorm's running statistics are updated from private data without noise. The kernel clips against
the norms the engine reports, so those norms must also be the norms of the true per-example gradients:
a weight used outside its module (tied embeddings through ``F.linear``) gets gradient the ghost
engine's layer rules do not see, and its per-example norms come out wrong.

Guards before the first step:

- :func:`refuse_batch_mixing_modules` (called by every engine's constructor): every BatchNorm (any
  kind, affine or not, lazy or synchronised) and every InstanceNorm that tracks running statistics
  is refused by type, with the fix in the message;
- :func:`check_engine`, because no list of layer types is complete: on a few public (test-set)
  examples, in training mode, (1) a forward pass (with grad enabled, as in training) must leave the
  model's state other than its parameters unchanged (:class:`ModelStateGuard`); (2) every
  example's gradient as the engine reports it (materialised rows, squared norms, and weighted sums
  with one-hot weights) must equal autograd's gradient of that example's loss; (3) replacing one
  example, and adding one, must leave every other example's gradient unchanged. Any failure names
  the parameter or buffer and the fix. The examples are public, so the check spends no privacy.

And one guard at every step, because a one-time check is dodgeable (a layer may update its state only
later in training, only for large batches, only with grad enabled): :class:`ModelStateGuard`. DP-SGD
releases only the noised gradient, and the evaluated, checkpointed and released model is a function of the
parameters and of the model's *other* state; so that other state (buffers, plain tensor attributes, any
attribute of any submodule, the class attributes of the model's own classes and the module globals their
functions name) must be exactly what it was before training after every training step and evaluation, and
the parameters' storages what the last optimizer step left. The training loop checks both after each step's
release and each evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn

from dpbench.engine.per_sample import GradientEngine, PerSampleGradients
from dpbench.privacy.isolation import StateFingerprint, instance_dict, listed, same_tensor

# Relative tolerance of the empirical checks (float32 reductions in other orders stay far below it).
TOLERANCE = 1e-4
CHECK_EXAMPLES = 4
FIX = "make every example's output depend on that example alone"
STATE_FIX = (
    "keep statistics of the training data out of the model (a layer may not update buffers, tensor attributes, "
    "class attributes or module globals in its forward), or compute them from public data before training "
    "(e.g. track_running_stats=False, or a buffer set once from the test set)"
)

T = TypeVar("T")


class ExampleMixingError(ValueError):
    """The model (or the engine) lets one example's gradient depend on other examples, or reports
    per-example gradients that are not autograd's."""


def refuse_batch_mixing_modules(model: nn.Module) -> None:
    """Refuse module types known to mix examples across the batch or to keep statistics of private data."""
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
    (public ones: the test set). The model's buffers, training flags and the random state are left as
    they were. Raises :class:`ExampleMixingError`."""
    if features.shape[0] < CHECK_EXAMPLES + 1:
        raise ValueError(f"check_engine needs at least {CHECK_EXAMPLES + 1} examples, got {features.shape[0]}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x, y = features[:CHECK_EXAMPLES].to(device), labels[:CHECK_EXAMPLES].to(device)
    spare_x, spare_y = features[CHECK_EXAMPLES:CHECK_EXAMPLES + 1].to(device), labels[CHECK_EXAMPLES:CHECK_EXAMPLES + 1]
    replaced = torch.cat([spare_x, x[1:]])
    added_x, added_y = torch.cat([x, spare_x]), torch.cat([y, spare_y.to(device)])
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    others = list(range(1, CHECK_EXAMPLES))
    with _restored(model):
        model.train()
        _check_buffers(model, x)
        first = _seeded(lambda: engine.per_sample_gradients(x, y))
        _compare_rows(names, first, _seeded(lambda: engine.per_sample_gradients(replaced, y)), others,
                      "replacing one example")
        _check_against_autograd(names, first, _seeded(lambda: _autograd_per_example(engine, model, x, y)))
        _check_added_example(engine, model, names, first, (x, y), (added_x, added_y))


def _check_added_example(
    engine: GradientEngine,
    model: nn.Module,
    names: list[str],
    first: PerSampleGradients,
    batch: tuple[torch.Tensor, torch.Tensor],
    added: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Adding one example must leave the others' gradients unchanged. A larger batch draws other noise,
    so a model whose gradients depend on the random state (dropout) is compared in eval mode; one that
    draws noise even there (a VAE's latent sample) is covered by the replacement check alone."""
    if not _deterministic(engine, first, *batch):
        model.eval()
        first = _seeded(lambda: engine.per_sample_gradients(*batch))
        if not _deterministic(engine, first, *batch):
            return
    _compare_rows(names, first, _seeded(lambda: engine.per_sample_gradients(*added)),
                  list(range(first.batch_size)), "adding one example")


@contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Leaves the model's buffers and every module's training flag as they were."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    modes = {module: module.training for module in model.modules()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        for module, training in modes.items():
            module.training = training


def _check_buffers(model: nn.Module, x: torch.Tensor) -> None:
    """One forward pass in training mode, with grad enabled as the engines' training forwards are, must leave
    the model's state other than its parameters (see :class:`ModelStateGuard`) as it was."""
    guard = ModelStateGuard(model)
    with torch.enable_grad():
        _seeded(lambda: model(x))
    guard.check("a forward pass in training mode (engine check, on public examples)")


class ModelStateGuard:
    """Refuses any change to a model's state other than its parameters (and their ``.grad``).

    Privacy argument: DP-SGD bounds what the *released gradients* say about any one example; the model a run
    evaluates, checkpoints and releases is a function of the parameters (post-processing of those releases) and
    of everything else the model holds. If that everything else is bitwise what it was before training, the
    released model is post-processing of the noised gradients and of public state; a forward pass that folds
    private data into it (a running max in a plain tensor attribute, a buffer updated only with grad enabled or
    only at some step, a class-level dict, a module-level list appended to) is refused with the paths it changed.

    What is compared (:class:`dpbench.privacy.isolation.StateFingerprint` without random states, i.e. by
    content and tensors' version counters): for every submodule, its instance attributes (buffers, flags, plain
    tensors and any Python object they reach, hooks with their closures), with the model's own parameters and
    submodules recorded by identity (a parameter is updated by the optimizer every step; replacing it is a
    change), and tensors sharing a parameter's storage recorded by their view (an alias moves with the
    parameter, which is not a change); the class attributes of the
    model's own (non-library) classes and the module globals their functions name."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._baseline = self._fingerprint()
        self._parameters = parameter_storages(model)
        if self._baseline.unreadable:
            shown = ", ".join(self._baseline.unreadable[:5])
            raise ExampleMixingError(
                f"the model holds state the per-step state check cannot read ({shown}), so it could not tell "
                f"whether training writes private data into it; {STATE_FIX}, and keep what the model holds in "
                "values the check compares (tensors, numbers, containers, objects with attributes)"
            )

    def accept_update(self, what: str) -> None:
        """Accept the trainable parameters as they are: call after the optimizer applied a release
        (post-processing). ``what`` (the optimizer step) may not have written into a frozen parameter's storage,
        which the optimizer does not update."""
        frozen = {name for name, parameter in model_storage_owners(self.model).items() if not parameter.requires_grad}
        self._refuse_written(what, [name for name in frozen if name in self._parameters])
        self._parameters = parameter_storages(self.model)

    def check(self, what: str) -> None:
        """Raise :class:`ExampleMixingError` naming every changed path if ``what`` (a training step, say)
        changed the model's state other than its parameters since the baseline, or wrote into the storage of
        a parameter (the whole storage, so an alias beyond the parameter's view too) since the last
        :meth:`accept_update`: a forward pass that writes training data into the weights releases it with the
        model, un-noised."""
        changed = self._baseline.changes(self._fingerprint(copies=False))
        if changed:
            raise ExampleMixingError(
                f"{what} changed the model's state other than its parameters: {listed(changed, 6, '; ')}. State the forward pass "
                "updates from the training data (running statistics, ranges, counters) is released with the model "
                f"without noise, so DP-SGD's guarantee would not cover it; {STATE_FIX}"
            )
        self._refuse_written(what, list(self._parameters))

    def _refuse_written(self, what: str, names: list[str]) -> None:
        written = [name for name in names if not _same_storage(self._parameters[name], name, self.model)]
        if written:
            raise ExampleMixingError(
                f"{what} wrote into the storage of parameter(s) {', '.join(written[:6])} outside the optimizer's "
                "update: a forward pass that writes training data into the weights releases it without noise; "
                "change parameters only through their gradients"
            )

    def _fingerprint(self, copies: bool = True) -> StateFingerprint:
        return _ModelFingerprint(self.model, copies)


def model_storage_owners(model: nn.Module) -> dict[str, torch.Tensor]:
    """One parameter per storage (by the first name using it; a trainable one where any parameter sharing the
    storage is trainable, since the optimizer may then write into it)."""
    owners: dict[int, tuple[str, torch.Tensor]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        storage = _storage_bytes(parameter)
        if storage is None:
            continue
        known = owners.get(storage.data_ptr())
        if known is None or (parameter.requires_grad and not known[1].requires_grad):
            owners[storage.data_ptr()] = (known[0] if known else name, parameter)
    return {name: parameter for name, parameter in owners.values()}


def parameter_storages(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the whole storage (as bytes) of every parameter, one per storage (:func:`model_storage_owners`)."""
    return {name: _storage_bytes(parameter).clone() for name, parameter in model_storage_owners(model).items()}


def _storage_bytes(parameter: torch.Tensor) -> torch.Tensor | None:
    if not parameter.numel() or parameter.is_meta or parameter.layout != torch.strided:
        return None
    return torch.empty(0, dtype=torch.uint8, device=parameter.device).set_(parameter.detach().untyped_storage())


def _same_storage(saved: torch.Tensor, name: str, model: nn.Module) -> bool:
    try:
        current = _storage_bytes(model.get_parameter(name))
    except AttributeError:  # the parameter was replaced by something else: the state check names it
        return True
    return current is not None and same_tensor(current, saved)


class _ModelFingerprint(StateFingerprint):
    """:class:`StateFingerprint` of a model's state other than its parameters: the walk starts at every
    submodule's instance attributes and its class, and records the model's parameters, tensors sharing their
    storage and the model's submodules by name, not by content."""

    def __init__(self, model: nn.Module, copies: bool = True) -> None:
        root = type(model).__name__
        self._root_entries: dict[str, Any] = {}
        self._parameter_of: dict[int, tuple[torch.Tensor, str]] = {}
        self._module_of: dict[int, tuple[nn.Module, str]] = {}
        self._storage_of: dict[int, str] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            self._module_of.setdefault(id(module), (module, name or root))
        for name, parameter in model.named_parameters(remove_duplicate=False):
            self._parameter_of.setdefault(id(parameter), (parameter, name))
            if parameter.numel():
                self._storage_of.setdefault(parameter.untyped_storage().data_ptr(), name)
        for module, name in list(self._module_of.values()):
            self._root_entries[f"class of module '{name}'"] = type(module)
            for key, value in (instance_dict(module) or {}).items():
                if key == "_parameters":
                    for slot, parameter in value.items():
                        self._root_entries[f"parameter slot '{name}.{slot}'"] = parameter
                elif key == "_buffers":
                    for slot, buffer in value.items():
                        self._root_entries[f"buffer '{name}.{slot}'"] = buffer
                elif key == "_modules":
                    for slot, child in value.items():
                        self._root_entries[f"submodule slot '{name}.{slot}'"] = child
                else:
                    self._root_entries[f"attribute '{name}.{key}'"] = value
        # version counters included: a tensor's is state too (a red team's model switched itself off by bumping a
        # buffer's with in-place additions of 0); the parameters' (which the optimizer moves) are not read
        super().__init__(self._root_entries, random_states=False, versions=True, copies=copies)

    def _visit(self, obj: object, path: str) -> None:
        if obj is self._root_entries:
            self.values[path] = ("model state",)
            for label, value in self._root_entries.items():
                self._visit(value, label)
            return
        known = self._parameter_of.get(id(obj)) or self._module_of.get(id(obj))
        if known is not None and known[0] is obj:
            # by identity (kept alive with the fingerprint, so a replacement cannot reuse its id): the optimizer
            # updates a parameter in place, and a forward that swaps in a new one is a change
            self._keep_alive.append(obj)
            self.values[path] = ("model's own", type(obj).__name__, known[1], id(obj))
            if isinstance(obj, torch.Tensor):  # a parameter's data moves with the optimizer; what it carries may not
                self._visit_parameter_extras(obj, path)
            return
        if isinstance(obj, nn.parameter.UninitializedTensorMixin):  # a lazy module's, before its first forward
            self.values[path] = ("uninitialized", type(obj).__name__)
            return
        if isinstance(obj, torch.Tensor) and obj.numel() and not obj.is_meta and obj.layout == torch.strided:
            try:
                shared = self._storage_of.get(obj.untyped_storage().data_ptr())
            except RuntimeError:  # no readable storage (kept from inside a torch.func transform): unequal to any
                shared = None
            if shared is not None:
                self.values[path] = ("view of parameter", shared, tuple(obj.shape), obj.stride(), obj.storage_offset())
                return
        super()._visit(obj, path)

    def _visit_parameter_extras(self, parameter: torch.Tensor, path: str) -> None:
        """A parameter's Python attributes and hooks (a red team kept a training image in an attribute of a
        weight, then copied it into the weights during evaluation)."""
        for key, value in (instance_dict(parameter) or {}).items():
            self._visit(value, f"{path}.{key}")
        for extra in ("grad", "_backward_hooks", "_post_accumulate_grad_hooks"):  # a gradient is None between steps
            self._visit(getattr(parameter, extra, None), f"{path}.{extra}")


def _seeded(call: Callable[[], T], seed: int = 0) -> T:
    """``call()`` under a fixed random state (models that draw noise in their forward, e.g. dropout or a
    VAE, draw the same noise for the same batch shape), leaving the caller's random state untouched."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return call()


def _deterministic(engine: GradientEngine, first: PerSampleGradients, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the engine's gradients do not depend on the random state (no dropout, no sampled noise):
    only then can a batch of another size be compared with ``first``."""
    again = _seeded(lambda: engine.per_sample_gradients(x, y), seed=1)
    return all(
        _close(a, b, _scale(a)) for a, b in zip(first.materialize(), again.materialize())
    ) and _close(first.squared_norms(), again.squared_norms(), _scale(first.squared_norms()))


def _autograd_per_example(
    engine: GradientEngine, model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> list[list[torch.Tensor]]:
    """Autograd's gradient of each example's loss (as the engine defines it) after one forward pass of
    the batch: ``[example][parameter]``."""
    output = model(x)
    parameters = [p for p in model.parameters() if p.requires_grad]
    gradients = []
    for b in range(x.shape[0]):
        loss = engine.loss_fn(output[b : b + 1], y[b : b + 1])
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        gradients.append([torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)])
    return gradients


def _check_against_autograd(
    names: list[str], reported: PerSampleGradients, expected: list[list[torch.Tensor]]
) -> None:
    rows, norms = reported.materialize(), reported.squared_norms()
    for b, gradient in enumerate(expected):
        one_hot = torch.zeros(len(expected), len(names), device=norms.device)
        one_hot[b] = 1.0
        summed = reported.weighted_sum(one_hot)
        for p, name in enumerate(names):
            truth = gradient[p].detach()
            scale = _scale(truth) + _scale(rows[p][b])
            true_norm = float(truth.double().pow(2).sum())
            wrong = [
                what
                for what, ok in [
                    ("gradient", _close(rows[p][b].detach(), truth, scale)),
                    ("weighted sum", _close(summed[p].detach(), truth, scale)),
                    ("squared norm", abs(float(norms[b, p]) - true_norm) <= TOLERANCE * max(true_norm, scale**2)),
                ]
                if not ok
            ]
            if wrong:
                raise ExampleMixingError(
                    f"the engine's per-example {' and '.join(wrong)} for parameter '{name}' differ from autograd's "
                    f"gradient of that example's loss (true squared norm {true_norm:.4g}, reported "
                    f"{float(norms[b, p]):.4g}), so the clipping bound would not hold. Either the parameter is "
                    "also used outside its module (tied weights, F.linear(x, module.weight) in a parent), which "
                    "the ghost engine's layer rules do not see: call the module itself, or use "
                    "train.engine=functorch; or the model computes each example differently in a batch than "
                    f"alone (it mixes examples): {FIX}"
                )


def _compare_rows(
    names: list[str], first: PerSampleGradients, second: PerSampleGradients, rows: list[int], change: str
) -> None:
    """Example ``rows`` of ``first`` and ``second`` (gradients and squared norms) must agree."""
    for p, (name, a, b) in enumerate(zip(names, first.materialize(), second.materialize())):
        kept_a, kept_b = a[rows].flatten(start_dim=1), b[rows].flatten(start_dim=1)
        norms_a, norms_b = first.squared_norms()[rows, p], second.squared_norms()[rows, p]
        scale = _scale(kept_a)
        if not (_close(kept_a, kept_b, scale) and _close(norms_a, norms_b, scale**2 + float(norms_a.max()))):
            moved = float((kept_a - kept_b).abs().max())
            raise ExampleMixingError(
                f"{change} changed other examples' gradients of parameter '{name}' (by up to {moved:.3g}, "
                f"{moved / scale:.2%} of their largest entry): the model mixes examples across the batch (batch "
                "statistics, a dependence on the batch size, attention over the batch dimension), so DP-SGD's "
                f"sensitivity bound does not hold; {FIX}"
            )


def _scale(t: torch.Tensor) -> float:
    return float(t.detach().abs().max()) + 1e-12 if t.numel() else 1e-12


def _close(a: torch.Tensor, b: torch.Tensor, scale: float) -> bool:
    return bool(((a.detach().double() - b.detach().double()).abs() <= TOLERANCE * scale).all())
