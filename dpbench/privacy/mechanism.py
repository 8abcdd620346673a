"""The two mechanism contracts.

**Structured** (:class:`Mechanism`): the mechanism only *decides* - which parameter tensors form a
clipping group, each group's threshold, each example's clipping factor, the data-independent shape
of the noise schedule, and the post-processing of the released gradient. The kernel computes the
norms, enforces ``factor * norm <= threshold`` for every example and group, adds Gaussian noise
scaled to the resulting sensitivity and records the step. Privacy holds by construction, whatever
the mechanism returns.

**Researcher form** (:class:`ResearcherMechanism`): the interface researchers already use. The
plugin receives materialised per-sample gradients and returns the noised gradient itself, and
reports its noise multiplier through ``get_effective_sigma``. The harness accounts that claim; its
privacy is only as good as the plugin.
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence, runtime_checkable

import torch


class MechanismContractError(TypeError):
    """A mechanism broke its contract (wrong output shapes, non-finite values, missing methods)."""


class Mechanism:
    """Base class of structured mechanisms: flat clipping to ``max_grad_norm`` unless overridden.

    Subclasses override any of the hooks below; none of them may look at data other than the norms
    passed in, and ``noise_shape`` must not depend on data at all (it is used to calibrate the noise
    before training starts)."""

    name = "structured"
    # Standard deviation of the Gaussian noise on the summed private statistic; None: no statistic.
    statistic_noise: float | None = None

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
        """Factor ``[B, G]`` that scales each example's group gradient; default min(1, C / norm)."""
        return torch.clamp(thresholds / group_norms.clamp_min(1e-12), max=1.0)

    def clip_statistic(self, group_norms: torch.Tensor, thresholds: torch.Tensor, step: int, epoch: int) -> torch.Tensor:
        """Per-example statistic ``[B]`` of the clipping (the kernel clamps it to [-1/2, 1/2], sums it,
        adds N(0, statistic_noise^2) and accounts it); only called if ``statistic_noise`` is set."""
        raise MechanismContractError(f"{type(self).__name__} sets statistic_noise but defines no clip_statistic")

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
    if not isinstance(output, (list, tuple)):
        raise MechanismContractError(
            f"{where}: clip_and_noise returned {type(output).__name__}; it must return a list with one tensor per parameter"
        )
    if len(output) != len(parameter_shapes):
        raise MechanismContractError(
            f"{where}: clip_and_noise returned {len(output)} tensors for {len(parameter_shapes)} parameters"
        )
    for index, (tensor, shape) in enumerate(zip(output, parameter_shapes)):
        if not isinstance(tensor, torch.Tensor):
            raise MechanismContractError(f"{where}: output {index} is {type(tensor).__name__}, not a tensor")
        if tensor.shape != shape:
            raise MechanismContractError(
                f"{where}: output {index} has shape {tuple(tensor.shape)}, expected {tuple(shape)} "
                "(inputs are [B, *param_shape]; outputs must drop the batch dimension)"
            )
        if not torch.isfinite(tensor).all():
            raise MechanismContractError(f"{where}: output {index} contains NaN or infinite values")
    return list(output)


def claimed_sigma(plugin: ResearcherMechanism, mechanism: str, step: int, epoch: int) -> float:
    """What a researcher-form plugin reports through ``get_effective_sigma``, checked to be a usable
    noise multiplier (a finite number > 0)."""
    reported = plugin.get_effective_sigma(step, epoch)
    try:
        sigma = float(reported)
    except (TypeError, ValueError):
        sigma = math.nan
    if not (math.isfinite(sigma) and sigma > 0):
        raise MechanismContractError(
            f"mechanism '{mechanism}' at step {step}: get_effective_sigma returned {reported!r}; it must return "
            "the noise multiplier (noise std / max_grad_norm) used at that step, a finite number > 0"
        )
    return sigma
