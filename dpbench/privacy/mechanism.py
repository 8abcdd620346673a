"""The two mechanism contracts, and the trust model that goes with them.

**Structured** (:class:`Mechanism`): the mechanism only *decides* - which parameter tensors form a
clipping group, each group's threshold, each example's clipping factor, the data-independent shape
of the noise schedule, and the post-processing of the released gradient. Its privacy holds whatever
the mechanism returns, because the kernel enforces every step of the argument:

- **sampling**: Poisson, by the kernel's own sampler (:mod:`dpbench.privacy.sampler`);
- **the clipping bound**: ``factor * norm <= C_g`` for every example and group, with norms in float64
  (recomputed in float64 wherever float32 under- or overflows) and the product checked in float64; an
  example whose gradient is not finite contributes nothing (:mod:`dpbench.privacy.finite_examples`); each example's factor (and statistic) is computed from its own
  norms only, by a rule the mechanism names (computed by the kernel: :mod:`dpbench.privacy.clip_rules`) or by
  its hooks evaluated per example (:mod:`dpbench.privacy.clipping`, :mod:`dpbench.engine.norms`);
- **independence of examples**: the engines refuse layers that mix examples (BatchNorm and the like)
  and check before the first step that one example's gradient does not move another's;
- **noise and the ledger**: N(0, (z_t sqrt(sum_g C_g^2))^2) added by the kernel, every step recorded;
- **isolation**: the only hooks that see un-noised data (``clip_factors``, ``clip_statistic``) get
  copies of the norms and run under a fingerprint of all the state the mechanism's code can reach;
  any change is refused, so nothing computed from raw data reaches a release, a threshold, a noise
  scale or a later step (:mod:`dpbench.privacy.isolation`). State may change only in
  ``observe_statistic`` (the noised statistic) and ``postprocess`` (the released gradient);
- **containment**: every call of a mechanism's code (either contract) may not obtain a frame (the
  kernel's frames hold the raw batch and the un-noised sum), scan the interpreter's objects, or leave a
  thread, a trace, profile or signal function, a torch mode or global hook, or a replaced function of
  dpbench, torch or the accountants behind it (:mod:`dpbench.privacy.containment`).

**Researcher form** (:class:`ResearcherMechanism`): the interface researchers already use. The
plugin receives materialised per-sample gradients and returns the noised gradient itself, and
reports its noise multiplier through ``get_effective_sigma``. The kernel still enforces sampling,
independence of examples and the ledger; the noise and the clipping are the plugin's, so the
verifier (:mod:`dpbench.verification`) *measures* them on probed steps and the ε printed is the one
it verified, with the number of steps it measured.

What a user *assumes* (nothing else): the accountants are correct (two independent implementations
are cross-checked on every run); the ghost engine's float32 norm identities for layers applied at many
positions (convolutions, sequences) lose no more than float32 rounding to cancellation (the engine check
compares them with autograd before training, not on every batch); outside the isolation fingerprint and
containment (another library's module state, files, the network, native code, its own objects' finalizers,
code that sets out to disable dpbench's checks themselves) a mechanism is trusted: it runs in the kernel's
process, and only a separate process would contain it completely; a researcher-form plugin behaves on unprobed
steps as it did on probed ones (the kernel makes every release the same call, probed step or not, and the
verifier's schedule is secret: :mod:`dpbench.privacy.plugin_streams`); and a seeded run's noise is
reproducible from its published seed
(``privacy.secure_noise=true`` draws it from OS entropy instead: use that for a model you release).
"""

from __future__ import annotations

import abc
import inspect
import math
import operator
import types
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import torch

from dpbench.privacy.clip_rules import CLIP_RULES, STATISTIC_RULES, rule_factors, rule_statistic
from dpbench.privacy.containment import ContainmentError, call_contained


class MechanismContractError(TypeError):
    """A mechanism broke its contract (wrong output shapes, non-finite values, missing methods)."""


class PluginError(RuntimeError):
    """A researcher-form plugin raised in its own code; the message names the plugin, the call and its
    arguments (the plugin's traceback is chained)."""


def build_plugin(factory: Callable[[], object], name: str, arguments: Mapping[str, object] | None = None) -> object:
    """``factory()`` (run :func:`~dpbench.privacy.containment.contained`), with an exception from the plugin's
    ``__init__`` reported as a :class:`PluginError`."""
    try:
        return call_contained(name, "__init__", factory)
    except (PluginError, ContainmentError):
        raise
    except Exception as error:
        shown = "" if arguments is None else ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        raise PluginError(
            f"plugin '{name}' raised {type(error).__name__}: {error} in __init__({shown}). The harness passes "
            "max_grad_norm and noise_multiplier as float, n_params, dataset_size, batch_size and epochs as int, "
            "target_epsilon and target_delta as float; fix the plugin"
        ) from error


def call_plugin(plugin: object, name: str, per_sample_grads: list[torch.Tensor], step: int, epoch: int) -> object:
    """``plugin.clip_and_noise(...)`` (run :func:`~dpbench.privacy.containment.contained`), with an exception
    from the plugin reported as a :class:`PluginError`."""
    try:
        what = f"clip_and_noise at step {step}"
        return call_contained(name, what, plugin.clip_and_noise, per_sample_grads, step, epoch)
    except ContainmentError:
        raise
    except Exception as error:
        shapes = ", ".join(str(tuple(g.shape)) for g in per_sample_grads)
        raise PluginError(
            f"plugin '{name}' raised {type(error).__name__}: {error} in clip_and_noise(per_sample_grads=[{shapes}] "
            f"(one [B, *param_shape] tensor per parameter), step={step}, epoch={epoch}); fix the plugin"
        ) from error


class Mechanism:
    """Base class of structured mechanisms: flat clipping to ``max_grad_norm`` unless overridden.

    Subclasses override any of the hooks below; none of them may look at data other than the norms
    passed in, ``clip_factors`` and ``clip_statistic`` must not change any state (enforced), and
    ``noise_shape`` must not depend on data at all (it is used to calibrate the noise before training
    starts). Rather than override ``clip_factors`` or ``clip_statistic``, a mechanism may name one of the
    kernel's rules (``clip_rule``, ``statistic_rule``: :mod:`dpbench.privacy.clip_rules`), which the kernel
    computes itself for the whole batch at once; an overriding hook runs once per example. ``name``,
    ``statistic_noise``, ``clip_rule``, ``clip_stability`` and ``statistic_rule`` are read once, when the run
    starts."""

    name = "structured"
    # Standard deviation of the Gaussian noise on the summed private statistic; None: no statistic.
    statistic_noise: float | None = None
    # The kernel's factor rule where clip_factors is not overridden, and the automatic rule's stability gamma.
    clip_rule: str = "flat"
    clip_stability: float = 0.0
    # The kernel's statistic rule where clip_statistic is not overridden (with statistic_noise set).
    statistic_rule: str | None = None

    def __init__(self, max_grad_norm: float) -> None:
        if not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        self.max_grad_norm = float(max_grad_norm)

    def parameter_groups(self, parameter_shapes: Sequence[torch.Size]) -> list[list[int]]:
        """Partition of parameter-tensor indices into clipping groups; default: one group."""
        return [list(range(len(parameter_shapes)))]

    def thresholds(self, step: int, epoch: int) -> list[float]:
        """Clipping threshold of each group at this step."""
        return [self.max_grad_norm]

    def clip_factors(self, group_norms: torch.Tensor, thresholds: torch.Tensor, step: int, epoch: int) -> torch.Tensor:
        """Factor ``[B, G]`` that scales each example's group gradient; default ``clip_rule``'s (min(1, C / norm)
        for ``flat``). Receives float64 copies of the group norms ``[B, G]`` and thresholds ``[G]``; must be free
        of side effects."""
        return rule_factors(self.clip_rule, self.clip_stability, group_norms, thresholds)

    def clip_statistic(self, group_norms: torch.Tensor, thresholds: torch.Tensor, step: int, epoch: int) -> torch.Tensor:
        """Per-example statistic ``[B]`` of the clipping (the kernel clamps it to [-1/2, 1/2], sums it,
        adds N(0, statistic_noise^2) and accounts it); only called if ``statistic_noise`` is set. Default:
        ``statistic_rule``'s."""
        if self.statistic_rule is None:
            raise MechanismContractError(
                f"{type(self).__name__} sets statistic_noise but neither a statistic_rule nor clip_statistic"
            )
        return rule_statistic(self.statistic_rule, group_norms, thresholds)

    def observe_statistic(self, noised_mean: float, step: int, epoch: int) -> None:
        """Receives the private statistic: (clamped sum + noise) / expected batch size. The only data
        a mechanism may use to change its state."""

    def noise_shape(self, step: int, epoch: int) -> float:
        """Data-independent factor of the noise multiplier at this step (1.0: constant noise)."""
        return 1.0

    def postprocess(self, gradient: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]:
        """Transform the released (already private) gradient; free of privacy cost."""
        return gradient


@runtime_checkable
class ResearcherMechanism(Protocol):
    """The researcher-facing plugin contract (supported unchanged for good).

    ``__init__(max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs,
    target_epsilon, target_delta)``; ``batch_size`` is the *expected* Poisson batch size and
    ``noise_multiplier`` the calibrated one."""

    def clip_and_noise(self, per_sample_grads: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]: ...

    def get_effective_sigma(self, step: int, epoch: int) -> float: ...


def check_plugin_output(
    output: object, parameter_shapes: Sequence[torch.Size], mechanism: str, step: int
) -> list[torch.Tensor]:
    """Validate what ``clip_and_noise`` returned: one finite tensor of each parameter's shape."""
    where = f"mechanism '{mechanism}' at step {step}"
    if type(output) not in (list, tuple):
        raise MechanismContractError(
            f"{where}: clip_and_noise returned {type(output).__name__}; it must return a list with one tensor per parameter"
        )
    if len(output) != len(parameter_shapes):
        raise MechanismContractError(
            f"{where}: clip_and_noise returned {len(output)} tensors for {len(parameter_shapes)} parameters"
        )
    for index, (tensor, shape) in enumerate(zip(output, parameter_shapes)):
        if type(tensor) is not torch.Tensor:  # checked first: a subclass's methods would run uncontained
            raise MechanismContractError(
                f"{where}: output {index} is {type(tensor).__name__}, not a plain torch.Tensor"
            )
        if tensor.shape != shape:
            raise MechanismContractError(
                f"{where}: output {index} has shape {tuple(tensor.shape)}, expected {tuple(shape)} "
                "(inputs are [B, *param_shape]; outputs must drop the batch dimension)"
            )
        if not torch.isfinite(tensor).all():
            raise MechanismContractError(f"{where}: output {index} contains NaN or infinite values")
    return list(output)


CUSTOM_ATTRIBUTE_ACCESS = ("__getattribute__", "__getattr__", "__dict__", "__class__")
"""A structured mechanism's class may not define these: the kernel and the isolation fingerprint read its
attributes, and these would run its code (uncontained) or show them other than they are."""
HOOKS = ("parameter_groups", "thresholds", "clip_factors", "clip_statistic", "noise_shape", "observe_statistic",
         "postprocess")


@dataclass(frozen=True)
class Declared:
    """What a structured mechanism declares once, read inside containment as plain values."""

    name: str
    statistic_noise: float | None
    clip_rule: str = "flat"
    clip_stability: float = 0.0
    statistic_rule: str | None = None


def declared_values(mechanism: Mechanism) -> Declared:
    """The mechanism's name, statistic noise and clipping rules, as plain ``str`` and ``float`` values (or None),
    after checking that its class reads as it is (:func:`check_plain_class`) and that the rules are the
    kernel's."""
    check_plain_class(type(mechanism))
    label = type(mechanism).__name__

    def read() -> Declared:
        name, noise, rule = mechanism.name, mechanism.statistic_noise, mechanism.clip_rule
        stability, statistic = mechanism.clip_stability, mechanism.statistic_rule
        return Declared(
            str(name), None if noise is None else float(noise), str(rule), float(stability),
            None if statistic is None else str(statistic),
        )

    declared = call_contained(label, "name, statistic_noise and clipping rules", read)
    noise, statistic = declared.statistic_noise, declared.statistic_rule
    if not (type(declared.name) is str and (noise is None or type(noise) is float) and type(declared.clip_rule) is str
            and type(declared.clip_stability) is float and (statistic is None or type(statistic) is str)):
        raise MechanismContractError(
            f"mechanism '{label}': name, clip_rule and statistic_rule must be str, statistic_noise a float or None, "
            "clip_stability a float"
        )
    if declared.clip_rule not in CLIP_RULES:
        raise MechanismContractError(
            f"mechanism '{label}': clip_rule {declared.clip_rule!r} is not one of the kernel's ({', '.join(CLIP_RULES)}); "
            "override clip_factors for another rule"
        )
    if not (math.isfinite(declared.clip_stability) and declared.clip_stability >= 0):
        raise MechanismContractError(f"mechanism '{label}': clip_stability must be finite and >= 0")
    if statistic is not None and statistic not in STATISTIC_RULES:
        raise MechanismContractError(
            f"mechanism '{label}': statistic_rule {statistic!r} is not one of the kernel's "
            f"({', '.join(STATISTIC_RULES)}); override clip_statistic for another statistic"
        )
    if noise is not None and statistic is None and inspect.getattr_static(type(mechanism), "clip_statistic") is \
            Mechanism.__dict__["clip_statistic"]:
        raise MechanismContractError(
            f"mechanism '{label}' sets statistic_noise but neither a statistic_rule nor clip_statistic"
        )
    return declared


PLAIN_METACLASSES = (type, abc.ABCMeta, type(Protocol))
"""Metaclasses a researcher-form plugin's class may have: the default one and abstract bases or protocols."""


def check_plain_plugin_class(cls: object) -> None:
    """Refuse a mechanism class (either form) whose class-level attribute access runs its code: another
    metaclass than ``PLAIN_METACLASSES`` (one with a ``__name__`` property, say, runs its code wherever the
    kernel names the class, outside containment), or a class in its MRO defining custom attribute access."""
    if not isinstance(cls, type):
        return
    problems = [] if type(cls) in PLAIN_METACLASSES else [f"its metaclass {type(cls).__qualname__}"]
    for klass in type.__getattribute__(cls, "__mro__"):
        if klass is not object:
            namespace = type.__getattribute__(klass, "__dict__")
            problems += [
                f"{type.__getattribute__(klass, '__name__')}.{name}" for name in CUSTOM_ATTRIBUTE_ACCESS
                if name in namespace and type(namespace[name]) is not types.GetSetDescriptorType  # the interpreter's own
            ]
    if problems:
        raise MechanismContractError(
            f"mechanism class {type.__getattribute__(cls, '__qualname__')} defines {', '.join(problems)}: the kernel "
            "reads a mechanism's attributes and names its class outside the mechanism's calls, and these would run "
            "its code there or show its state other than it is; use a plain class (abc.ABC is fine)"
        )


def check_plain_class(cls: type) -> None:
    """Refuse a structured mechanism class whose attributes do not read as they are: a metaclass, custom
    attribute access, or a hook that is not a plain function."""
    problems = []
    if type(cls) is not type:
        problems.append(f"its metaclass {type(cls).__name__}")
    for klass in cls.__mro__:
        if klass in (Mechanism, object):
            continue
        namespace = vars(klass)
        problems += [f"{klass.__name__}.{name}" for name in CUSTOM_ATTRIBUTE_ACCESS if name in namespace]
        problems += [
            f"{klass.__name__}.{name} (a {type(namespace[name]).__name__}, not a function)"
            for name in HOOKS if name in namespace and not isinstance(namespace[name], types.FunctionType)
        ]
    if problems:
        raise MechanismContractError(
            f"mechanism class {cls.__name__} defines {', '.join(problems)}: the kernel reads a structured mechanism's "
            "attributes and calls its hooks, and these would run its code where it is not contained or show its "
            "state other than it is; use plain attributes and methods"
        )


def structured_call(
    mechanism: Mechanism, declared: Declared, hook: str, step: int, *args: object,
    convert: Callable[[Any], Any] | None = None,
) -> Any:
    """``mechanism.<hook>(*args)``, its result passed through ``convert`` (to plain values), run
    :func:`~dpbench.privacy.containment.contained`, ``convert`` included (it may run the result's methods).
    The base class's own hooks too: they read the mechanism's attributes (``max_grad_norm``), which its own
    code may have set to an object of its own (a float subclass whose ``__float__`` read the kernel's frames,
    where the batch is). A hook set on the instance (not a method of the class) is refused."""
    method = class_hook(mechanism, declared, hook)

    def call() -> Any:
        value = method(mechanism, *args)
        return value if convert is None else convert(value)

    return call_contained(declared.name, f"{hook} at step {step}", call)


def class_hook(mechanism: Mechanism, declared: Declared, hook: str) -> types.FunctionType:
    """The function that ``mechanism.<hook>`` is, found without running any of the mechanism's code; a hook
    set on the instance (not a method of its class) is refused."""
    method = inspect.getattr_static(mechanism, hook)
    if hook in vars(mechanism) or not isinstance(method, types.FunctionType):
        raise MechanismContractError(
            f"mechanism '{declared.name}': {hook} must be a method of its class, not an attribute set on the instance"
        )
    return method


def plain_number(value: object) -> float | str:
    """A returned number as a plain float; what ``float()`` refuses comes back as its repr (both computed
    where the mechanism's code is contained), for the caller's message."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return repr(value)


def plain_floats(values: object) -> tuple[float, ...]:
    """``values`` (any iterable of numbers) as a tuple of plain floats."""
    return tuple(float(v) for v in values)


def plain_groups(groups: object) -> tuple[tuple[int, ...], ...]:
    """Parameter groups as a tuple of tuples of plain ints (``operator.index``: no float, no subclass)."""
    return tuple(tuple(operator.index(i) for i in group) for group in groups)


def plain_tensors(tensors: object) -> list[torch.Tensor]:
    """A hook's list of tensors as plain ``torch.Tensor`` copies; anything else (a subclass, whose methods
    would run wherever the kernel uses it) is refused."""
    if type(tensors) not in (list, tuple):
        raise MechanismContractError(f"returned {type(tensors).__name__}; it must return a list of tensors")
    for index, tensor in enumerate(tensors):
        if type(tensor) is not torch.Tensor:
            raise MechanismContractError(
                f"output {index} is {type(tensor).__name__}; it must be a plain torch.Tensor (a subclass's methods "
                "would run wherever the kernel uses it)"
            )
    return [t.detach().clone() for t in tensors]


def claimed_sigma(plugin: ResearcherMechanism, mechanism: str, step: int, epoch: int) -> float:
    """What a researcher-form plugin reports through ``get_effective_sigma``, checked to be a usable
    noise multiplier (a finite number > 0)."""
    return positive_number(
        call_contained(mechanism, f"get_effective_sigma at step {step}", plugin.get_effective_sigma, step, epoch),
        mechanism, step,
        "get_effective_sigma", "the noise multiplier (noise std / max_grad_norm) used at that step",
    )


def positive_number(reported: object, mechanism: str, step: int, hook: str, meaning: str) -> float:
    """``reported`` as a float, or a :class:`MechanismContractError` unless it is finite and > 0."""
    try:
        value = float(reported)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise MechanismContractError(
            f"mechanism '{mechanism}' at step {step}: {hook} returned {reported!r}; it must return {meaning}, "
            "a finite number > 0"
        )
    return value
