"""Composition by configuration: clipping from one mechanism, noise schedule and post-processing from others."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from dpbench.privacy.mechanism import Mechanism

# The hooks Composed takes from its noise and post-processing components. Every other public member
# of the Mechanism contract goes to the clipping component: today parameter_groups, thresholds, the
# clipping rules (clip_rule, clip_stability, statistic_rule) and the private-statistics channel
# (statistic_noise, observe_statistic); members the kernel adds later follow automatically (see
# CLIPPING_HOOKS). The raw-data hooks go to it only where it overrides them (ComposedHooks).
ROLE_HOOKS = {"noise_shape": "noise", "postprocess": "postprocessing"}
RAW_DATA_HOOKS = ("clip_factors", "clip_statistic")

Component = Callable[..., Mechanism]


class Composed(Mechanism):
    """A structured mechanism assembled from components: ``clipping`` decides the groups, thresholds
    and clipping factors, ``noise`` (optional) the noise schedule's shape, ``postprocessing``
    (optional) the transformation of the released gradient, after the clipping component's own.

    Privacy argument: the kernel enforces the clipping component's bounds, so the sensitivity is
    sqrt(sum_g C_g^2) of the clipping component's thresholds; the noise is z * s(t) times that
    sensitivity with s the noise component's data-independent shape (constant without one), z
    calibrated over the whole planned ledger and every step recorded at its own multiplier; the
    post-processing component sees only released gradients. Each part is the privacy argument of its
    own mechanism, and none of them can change another's: the kernel checks them all as it would one.

    Components are factories called with ``max_grad_norm`` (a class, or a Hydra config with
    ``_partial_: true``), so one ``max_grad_norm`` serves the whole composition. The ledger names the
    mechanism after its components (e.g. ``perlayer+noise_decay``)."""

    name = "composed"

    def __init__(
        self,
        max_grad_norm: float,
        clipping: Component,
        noise: Component | None = None,
        postprocessing: Component | None = None,
    ) -> None:
        super().__init__(max_grad_norm)
        self.clipping = build_component(clipping, "clipping", max_grad_norm)
        self.noise = None if noise is None else build_component(noise, "noise", max_grad_norm)
        self.postprocessing = (
            None if postprocessing is None else build_component(postprocessing, "postprocessing", max_grad_norm)
        )
        parts = [self.clipping, self.noise, self.postprocessing]
        self.name = "+".join(dict.fromkeys(part.name for part in parts if part is not None))
        if any(vars(Mechanism)[hook] is not inspect.getattr_static(self.clipping, hook) for hook in RAW_DATA_HOOKS):
            self.__class__ = ComposedHooks

    def noise_shape(self, step: int, epoch: int) -> float:
        return 1.0 if self.noise is None else self.noise.noise_shape(step, epoch)

    def postprocess(self, gradient: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]:
        """The clipping component's own post-processing (the units of its release, such as adaptive
        clipping's rescaled step; the identity for most), then the post-processing component's."""
        gradient = self.clipping.postprocess(gradient, step, epoch)
        return gradient if self.postprocessing is None else self.postprocessing.postprocess(gradient, step, epoch)


class ComposedHooks(Composed):
    """A composition whose clipping component overrides a raw-data hook (``clip_factors``, ``clip_statistic``):
    both are delegated to it, and the kernel evaluates them per example, as it does any mechanism's. A component
    that uses the kernel's rules instead stays a plain :class:`Composed`, whose clipping the kernel computes for
    the whole batch (delegating the hooks would make every composition pay the per-example evaluation).
    :class:`Composed` picks this class itself when it is built."""


def build_component(factory: Component | Mechanism, role: str, max_grad_norm: float) -> Mechanism:
    if isinstance(factory, Mechanism):
        raise TypeError(
            f"Composed {role} component is an already-built {type(factory).__name__}; pass a factory instead "
            "(the class, or in YAML add `_partial_: true` to the component) so that it gets the composition's "
            "max_grad_norm"
        )
    component = factory(max_grad_norm=max_grad_norm)
    if not isinstance(component, Mechanism):
        raise TypeError(
            f"Composed {role} component built a {type(component).__name__}; it must be a "
            "dpbench.privacy.mechanism.Mechanism (structured form)"
        )
    return component


def _delegate_to_clipping(member: str, value: object) -> object:
    """A method (for a hook) or a read-only property (for an attribute such as ``statistic_noise``)
    that forwards to the clipping component."""
    if not callable(value):
        return property(lambda self: getattr(self.clipping, member), doc=f"The clipping component's ``{member}``.")

    def delegated(self: Composed, *args: object, **kwargs: object) -> object:
        return getattr(self.clipping, member)(*args, **kwargs)

    delegated.__name__ = delegated.__qualname__ = member
    delegated.__doc__ = f"The clipping component's ``{member}``."
    return delegated


CLIPPING_HOOKS = tuple(
    member for member in vars(Mechanism)
    if not member.startswith("_") and member not in ("name", *ROLE_HOOKS, *RAW_DATA_HOOKS)
)
for _member in CLIPPING_HOOKS:
    setattr(Composed, _member, _delegate_to_clipping(_member, vars(Mechanism)[_member]))
for _member in RAW_DATA_HOOKS:
    setattr(ComposedHooks, _member, _delegate_to_clipping(_member, vars(Mechanism)[_member]))
