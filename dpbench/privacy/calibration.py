"""Noise calibration: the smallest noise multiplier that spends exactly the target (epsilon, delta).

An under-spent budget is needless noise. Given the planned run (sampling rate, number of steps)
and the mechanism's data-independent noise *shape* s(step, epoch), the harness uses the noise
multiplier z * s(step, epoch) at each step; this module solves for the scale z such that the final
epsilon of the planned ledger lies in [(1 - tolerance) * target, target]. It is what Opacus's
``make_private_with_epsilon`` does, generalised to schedules and to statistics released before
training (their cost is part of the planned ledger, so the steps get what is left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from dpbench.privacy.accountant import epsilon, tuning_epsilon
from dpbench.privacy.ledger import PrivacyLedger, StepRecord
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.privacy.tuning import TrialCount

NoiseShape = Callable[[int, int], float]


class PrivacyConfigError(ValueError):
    """A privacy target or training plan that cannot be honoured."""


@dataclass(frozen=True)
class TrainingPlan:
    """The releases a run will make: ``epochs * steps_per_epoch`` Poisson-sampled steps at rate q,
    after the one-shot statistics releases (full-data Gaussian mechanisms) of ``releases``."""

    dataset_size: int
    expected_batch_size: float
    epochs: int
    releases: tuple[StatisticsRelease, ...] = ()

    @property
    def sampling_rate(self) -> float:
        return self.expected_batch_size / self.dataset_size

    @property
    def steps_per_epoch(self) -> int:
        return max(1, round(self.dataset_size / self.expected_batch_size))

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch


def validate_privacy_target(target_epsilon: float, delta: float, plan: TrainingPlan) -> None:
    """Refuse settings under which no meaningful guarantee can be calibrated."""
    if plan.dataset_size <= 0:
        raise PrivacyConfigError(f"dataset has {plan.dataset_size} examples; nothing to train on")
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise PrivacyConfigError(
            f"target epsilon must be a finite number > 0, got {target_epsilon}; set privacy.target_epsilon (e.g. 3)"
        )
    if not (0 < delta < 1.0 / plan.dataset_size):
        raise PrivacyConfigError(
            f"delta = {delta} must be in (0, 1/N) = (0, {1.0 / plan.dataset_size:.3g}) for N = {plan.dataset_size} "
            f"examples: a delta of 1/N or more allows releasing a whole example; set privacy.target_delta "
            f"below 1/N, e.g. privacy.target_delta={10 ** math.floor(math.log10(1.0 / plan.dataset_size) - 1e-9):.0e}"
        )
    if plan.epochs <= 0:
        raise PrivacyConfigError(f"epochs must be >= 1, got {plan.epochs}; set train.epochs")
    if not float(plan.expected_batch_size).is_integer():
        raise PrivacyConfigError(
            f"expected batch size {plan.expected_batch_size} is not an integer; set train.batch_size to a whole "
            "number of examples (mechanisms receive it as an int)"
        )
    if not (0 < plan.expected_batch_size <= plan.dataset_size):
        raise PrivacyConfigError(
            f"expected batch size {plan.expected_batch_size} gives sampling rate q = "
            f"{plan.expected_batch_size / plan.dataset_size:.3g}; q must be in (0, 1]: "
            f"set train.batch_size between 1 and the dataset size {plan.dataset_size}"
        )


def planned_ledger(plan: TrainingPlan, noise_multiplier: float, noise_shape: NoiseShape) -> PrivacyLedger:
    """The ledger a run would produce with base multiplier ``noise_multiplier``."""
    return PrivacyLedger([release.record() for release in plan.releases] + [
        StepRecord(
            step=t,
            epoch=plan.epoch_of(t),
            sampling_rate=plan.sampling_rate,
            noise_multiplier=noise_multiplier * noise_shape(t, plan.epoch_of(t)),
            sensitivity=1.0,
            mechanism="plan",
            noise_source="harness",
        )
        for t in range(plan.total_steps)
    ])


def constant_shape(step: int, epoch: int) -> float:
    return 1.0


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    plan: TrainingPlan,
    noise_shape: NoiseShape = constant_shape,
    tolerance: float = 0.01,
    accountant: str = "rdp",
    trials: TrialCount | None = None,
) -> float:
    """Base noise multiplier z whose planned epsilon is within ``tolerance`` below the target. With
    ``trials``, ``plan`` is one trial of a private search and the target is the whole search's epsilon
    (:func:`~dpbench.privacy.accountant.tuning_epsilon`): tuning is paid for inside the budget."""
    validate_privacy_target(target_epsilon, delta, plan)
    for t in range(plan.total_steps):
        shape = noise_shape(t, plan.epoch_of(t))
        if not (math.isfinite(shape) and shape > 0):
            raise PrivacyConfigError(f"noise shape at step {t} is {shape}; it must be finite and > 0")
    def spent_on(ledger: PrivacyLedger) -> float:
        return epsilon(ledger, delta, accountant) if trials is None else tuning_epsilon(ledger, trials, delta)

    if plan.releases:
        releases_alone = spent_on(PrivacyLedger([release.record() for release in plan.releases]))
        if releases_alone >= target_epsilon:
            names = ", ".join(release.name for release in plan.releases)
            raise PrivacyConfigError(
                f"the statistics released before training ({names}) alone spend epsilon {releases_alone:.3g}, "
                f"not less than the target {target_epsilon}: nothing is left for training; raise their noise "
                "multiplier or the target epsilon"
            )

    def spent(z: float) -> float:
        return spent_on(planned_ledger(plan, z, noise_shape))

    low, high = 0.25, 1.0
    while spent(high) > target_epsilon:
        low, high = high, high * 2
        if high > 1e5:
            raise PrivacyConfigError(f"no noise multiplier below 1e5 reaches epsilon {target_epsilon}")
    while spent(low) <= target_epsilon:
        low, high = low / 2, low
        if low < 1e-3:
            raise PrivacyConfigError(
                f"target epsilon {target_epsilon} is reached with almost no noise (z < 1e-3) for this plan; "
                "lower privacy.target_epsilon or train longer"
            )
    for _ in range(100):
        if spent(high) >= (1 - tolerance) * target_epsilon:
            return high
        middle = math.sqrt(low * high)
        if spent(middle) > target_epsilon:
            low = middle
        else:
            high = middle
    raise PrivacyConfigError("noise calibration did not converge")
