"""Clipping: per-example contributions bounded group by group, and the sensitivity that follows.

Parameter tensors are partitioned into groups g with thresholds C_g. Each example's contribution to
group g is its gradient there times a factor f, and the kernel enforces ``f * ||grad_g|| <= C_g``
whatever the mechanism proposed. Under add/remove-one adjacency the summed release then moves by a
vector whose group norms are at most C_g, so its L2 sensitivity is ``sqrt(sum_g C_g^2)``.

A mechanism may also ask for one private statistic of the clipping (e.g. the fraction of examples
under the threshold, for adaptive clipping): each example's value is clamped to
``[-STATISTIC_BOUND, STATISTIC_BOUND]``, so the summed statistic has sensitivity ``STATISTIC_BOUND``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from dpbench.engine.per_sample import PerSampleGradients
from dpbench.privacy.clip_rules import rule_factors, rule_statistic
from dpbench.privacy.containment import call_contained
from dpbench.privacy.isolation import call_isolated, plain_tensor
from dpbench.privacy.mechanism import (
    Declared,
    Mechanism,
    MechanismContractError,
    class_hook,
    declared_values,
    plain_floats,
    structured_call,
)

STATISTIC_BOUND = 0.5
SAFETY_MARGIN = 2.0**-20
"""Relative shrink of every clipping factor: larger than float32's rounding of the factor and of the
weighted sum, so the float32 contribution stays within the float64-checked bound."""
FACTOR_CAP = 1e30
"""No example's gradient is scaled up by more than this (factor times gradient stays finite in float32)."""


@dataclass(frozen=True)
class ClippedChunk:
    """A physical batch's contribution: clipped gradient sum and (if asked for) statistic sum."""

    gradient_sum: list[torch.Tensor]
    statistic_sum: float


@dataclass(frozen=True)
class ClippingPlan:
    """Groups of parameter-tensor indices and the threshold of each, fixed for one step."""

    groups: tuple[tuple[int, ...], ...]
    thresholds: tuple[float, ...]
    declared: Declared  # the mechanism's name and statistic noise, read once

    def __post_init__(self) -> None:
        if len(self.groups) != len(self.thresholds):
            raise MechanismContractError(f"{len(self.groups)} clipping groups but {len(self.thresholds)} thresholds")
        for c in self.thresholds:
            if not (math.isfinite(c) and c > 0):
                raise MechanismContractError(f"clipping threshold {c} must be finite and > 0")

    @property
    def sensitivity(self) -> float:
        return math.sqrt(sum(c * c for c in self.thresholds))


def check_groups(groups: Sequence[Sequence[int]], n_tensors: int) -> tuple[tuple[int, ...], ...]:
    """Groups must partition the parameter tensors: every tensor in exactly one group."""
    flat = sorted(i for group in groups for i in group)
    if flat != list(range(n_tensors)):
        raise MechanismContractError(
            f"parameter groups {list(map(list, groups))} must partition the {n_tensors} parameter tensors"
        )
    return tuple(tuple(group) for group in groups)


def clipping_plan(
    mechanism: Mechanism, groups: tuple[tuple[int, ...], ...], step: int, epoch: int, declared: Declared | None = None
) -> ClippingPlan:
    declared = declared_values(mechanism) if declared is None else declared
    thresholds = structured_call(mechanism, declared, "thresholds", step, step, epoch, convert=plain_floats)
    return ClippingPlan(groups, thresholds, declared)


def clip_chunk(
    per_sample: PerSampleGradients, mechanism: Mechanism, plan: ClippingPlan, step: int, epoch: int
) -> ClippedChunk:
    """Sum over the batch of the clipped per-example gradients, with the bound enforced, and the sum
    of the mechanism's clamped per-example statistic (0 if it asks for none).

    Norms and factors are computed in float64 from the engine's squared norms; the mechanism's raw-data
    hooks get copies of the norms and run isolated (:mod:`dpbench.privacy.isolation`)."""
    squared = per_sample.squared_norms().to(torch.float64)
    if not torch.isfinite(squared).all():
        bad = (~torch.isfinite(squared).all(dim=1)).nonzero().flatten().tolist()
        raise FloatingPointError(
            f"step {step}: non-finite per-sample gradient for {len(bad)} example(s) reached the clipping kernel; "
            "the training loop leaves such examples out (dpbench.privacy.finite_examples): pass chunks through it"
        )
    group_norms = (squared @ _membership(plan, squared.shape[1], squared.device)).sqrt()
    thresholds = torch.tensor(plan.thresholds, dtype=torch.float64, device=squared.device)
    name = plan.declared.name
    proposed = _raw_data_hook(mechanism, plan.declared, "clip_factors", group_norms, thresholds, step, epoch)
    if proposed.shape != group_norms.shape or not torch.isfinite(proposed).all() or (proposed < 0).any():
        raise MechanismContractError(
            f"mechanism '{name}' step {step}: clip_factors must return finite factors >= 0 of shape "
            f"{tuple(group_norms.shape)}, got shape {tuple(proposed.shape)}"
        )
    factors = bounded_factors(proposed, group_norms, thresholds)
    statistic = 0.0
    if plan.declared.statistic_noise is not None:
        values = _raw_data_hook(mechanism, plan.declared, "clip_statistic", group_norms, thresholds, step, epoch)
        if values.shape != group_norms.shape[:1] or not torch.isfinite(values).all():
            raise MechanismContractError(
                f"mechanism '{name}' step {step}: clip_statistic must return "
                f"{group_norms.shape[0]} finite values"
            )
        statistic = float(values.to(torch.float64).clamp(-STATISTIC_BOUND, STATISTIC_BOUND).sum())
    membership = _membership(plan, squared.shape[1], squared.device)  # built after the hooks, which never see it
    return ClippedChunk(per_sample.weighted_sum(factors @ membership.to(factors.dtype).T), statistic)


def _membership(plan: ClippingPlan, n_tensors: int, device: torch.device) -> torch.Tensor:
    """``[n_tensors, G]``: 1 where parameter tensor i is in group g."""
    membership = torch.zeros(n_tensors, len(plan.groups), dtype=torch.float64, device=device)
    for g, group in enumerate(plan.groups):
        membership[list(group), g] = 1.0
    return membership


def bounded_factors(proposed: torch.Tensor, group_norms: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """The float32 factors the engine applies: ``min(proposed, C_g / norm)``, shrunk by ``SAFETY_MARGIN``
    (which covers the float32 rounding of the factor and of the engine's weighted sum), capped at
    ``FACTOR_CAP`` (so that factor times gradient cannot overflow), and then *checked* in float64:
    ``factor * norm <= C_g`` for every example and group, or the step is refused. An example whose
    gradient is exactly zero gets a factor of at most 1 (its contribution is zero either way)."""
    cap = torch.where(group_norms > 0, thresholds / group_norms, torch.ones_like(group_norms))
    factors = torch.minimum(proposed.to(torch.float64), cap).clamp(max=FACTOR_CAP) * (1.0 - SAFETY_MARGIN)
    applied = factors.to(torch.float32)
    if not bool((applied.to(torch.float64) * group_norms <= thresholds).all()):
        raise FloatingPointError(
            "clipping factors exceed the bound after rounding to float32; the step is refused (this is a bug in "
            "dpbench's kernel: please report it with the mechanism and model)"
        )
    return applied


def _raw_data_hook(
    mechanism: Mechanism, declared: Declared, hook: str, group_norms: torch.Tensor, thresholds: torch.Tensor,
    step: int, epoch: int,
) -> torch.Tensor:
    """Call a hook that sees un-noised norms. Where the mechanism does not override it, the kernel computes the
    rule the mechanism declared (:mod:`dpbench.privacy.clip_rules`; read once, as plain values) for the whole
    batch: no mechanism code runs. An overriding hook runs contained and isolated (any change to the state its
    code can reach is refused), *per example* (:func:`per_example`), on copies of the norms, its result made a
    plain tensor inside that."""
    method = class_hook(mechanism, declared, hook)
    if method is Mechanism.__dict__[hook]:
        if hook == "clip_factors":
            return rule_factors(declared.clip_rule, declared.clip_stability, group_norms, thresholds)
        return rule_statistic(declared.statistic_rule, group_norms, thresholds)  # declared_values refused None

    def isolated() -> torch.Tensor:
        function, norms = getattr(mechanism, hook), group_norms.clone()
        rows = call_isolated(mechanism, hook, declared.name, step,
                             lambda: per_example(lambda own: function(own, thresholds.clone(), step, epoch), norms))
        return plain_tensor(rows, hook, declared.name, step)

    return call_contained(declared.name, f"{hook} at step {step}", isolated)


def per_example(hook: Callable[[torch.Tensor], torch.Tensor], group_norms: torch.Tensor) -> torch.Tensor:
    """``hook`` applied to each example's norms alone, the results stacked: an example's clipping factor (or
    statistic) can then depend on its own norms only. A hook of the whole ``[B, G]`` matrix could make one
    example's factor depend on another's norm (zero every factor when some example's norm is large: one
    example then moves the sum by up to B C_g, with C_g recorded), and the kernel's bound, checked example by
    example, would not see it. Each call gets a ``[1, G]`` tensor of its own (a copy, not a view of the
    matrix, whose storage holds every row; and not a ``torch.func.vmap`` batch either, which a hook can unwrap
    to the whole matrix: a red team's hooks did both). State a call could leave for the next is refused by
    the fingerprint around the whole loop (:func:`~dpbench.privacy.isolation.call_isolated`)."""
    if group_norms.shape[0] == 0:
        return hook(group_norms.clone())
    return torch.cat([hook(group_norms[i:i + 1].clone()) for i in range(group_norms.shape[0])])

