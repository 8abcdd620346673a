"""The budget of a private search: one target (epsilon, delta) for the whole search, tuning included.

A private random search trains K trials (K secret, drawn from a :class:`~dpbench.privacy.tuning.TrialCount`)
and releases the best one by a noised validation score. Papernot & Steinke's bound needs one Renyi DP
curve that every trial satisfies. dpbench fixes that curve before any trial runs: the *reference
trial* is the search's base plan (its batch size and epochs, constant noise, plus the score release),
and its noise multiplier is calibrated so that the whole search, ``RepeatAndSelectDpEvent`` of the
reference, spends the target. Every trial is then given the smallest noise multiplier whose RDP curve
lies at or below the reference curve at every order, whatever its own batch size, epochs or noise
schedule; a trial with the reference's plan and constant noise gets exactly the reference's
multiplier. So every trial satisfies the curve the bound is computed from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dpbench.privacy.accountant import rdp_curve, tuning_epsilon
from dpbench.privacy.calibration import (
    NoiseShape,
    PrivacyConfigError,
    TrainingPlan,
    calibrate_noise_multiplier,
    constant_shape,
    planned_ledger,
)
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.tuning import TrialCount

# A trial's curve may exceed the reference's by this relative rounding slack of the accountant.
CURVE_SLACK = 1e-9


@dataclass(frozen=True)
class SearchBudget:
    """The target of a whole search and the reference trial that every trial is calibrated against."""

    target_epsilon: float
    delta: float
    trials: TrialCount
    reference: TrainingPlan
    reference_multiplier: float = field(init=False)
    reference_curve: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        z = calibrate_noise_multiplier(self.target_epsilon, self.delta, self.reference, trials=self.trials)
        object.__setattr__(self, "reference_multiplier", z)
        object.__setattr__(self, "reference_curve", tuple(rdp_curve(planned_ledger(self.reference, z, constant_shape))))

    @property
    def total_epsilon(self) -> float:
        """Epsilon of the whole search (every trial dominated by the reference)."""
        reference = planned_ledger(self.reference, self.reference_multiplier, constant_shape)
        return tuning_epsilon(reference, self.trials, self.delta)

    def dominated(self, ledger: PrivacyLedger) -> bool:
        """Whether a trial's (actual or planned) ledger satisfies the reference curve at every order."""
        return all(a <= b * (1 + CURVE_SLACK) for a, b in zip(rdp_curve(ledger), self.reference_curve))

    def trial_multiplier(self, plan: TrainingPlan, noise_shape: NoiseShape = constant_shape) -> float:
        """The smallest base multiplier (to 0.1%) whose planned ledger for ``plan`` is dominated."""
        if plan.releases != self.reference.releases:
            raise PrivacyConfigError("a trial must make the same statistics releases as the search's reference")

        def ok(z: float) -> bool:
            return self.dominated(planned_ledger(plan, z, noise_shape))

        high = self.reference_multiplier
        if ok(high) and plan == self.reference and noise_shape is constant_shape:
            return high
        low = high
        while not ok(high):
            low, high = high, high * 2
            if high > 1e5:
                raise PrivacyConfigError("no noise multiplier below 1e5 keeps this trial within the search's budget")
        while ok(low):
            low, high = low / 2, low
            if low < 1e-4:
                return high
        while high / low > 1.001:
            middle = math.sqrt(low * high)
            low, high = (low, middle) if ok(middle) else (middle, high)
        return high

