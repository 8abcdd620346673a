"""One trial of a search, as the run sees it (a run whose config has a ``tune`` block).

Before training, a validation split is carved from the trial's training set and the trial's noise is
calibrated, with the noised validation score as one more release in the plan. After training, the score
is released through the kernel and recorded in the ledger.

- A trial of a **private search** (``tune=private``) trains on the private data, so its noise is calibrated
  under the search's reference curve (:class:`~dpbench.privacy.search_budget.SearchBudget`); the summary
  gets the score, the search's total epsilon (valid only if the trial's accountable ledger is under the
  reference curve, checked) and the trial's own epsilon.
- A trial of a **public-proxy search** (``tune=public``) trains on the public dataset ``tune.tuned_on`` as
  one run at the target would on the private data (calibrated to the target on its own: the public data need
  no tuning bound). The run that then applies the chosen hyper-parameters to the private data (``tune.trial``
  null) is an ordinary run at the target, on the whole private training set: no trial, no validation split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from dpbench.data import DatasetSplits
from dpbench.privacy.calibration import NoiseShape, TrainingPlan, calibrate_noise_multiplier
from dpbench.privacy.ledger import PrivacyLedger, StepRecord
from dpbench.privacy.noise import NoiseSource
from dpbench.privacy.search_budget import SearchBudget
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.privacy.tuning import TrialCount
from dpbench.training.validation import ValidationSplit, carve_validation, released_score


@dataclass(frozen=True)
class PublicTarget:
    """A public-proxy trial's budget: the target of one run, as the private run will spend it."""

    target_epsilon: float
    delta: float
    accountant: str

    def trial_multiplier(self, plan: TrainingPlan, noise_shape: NoiseShape) -> float:
        return calibrate_noise_multiplier(self.target_epsilon, self.delta, plan, noise_shape, accountant=self.accountant)


@dataclass(frozen=True)
class Trial:
    """The trial's id, its plan, its budget (the private search's, or a public proxy's plain target) and the
    validation split it is selected by."""

    trial_id: str
    plan: TrainingPlan
    budget: SearchBudget | PublicTarget
    validation: ValidationSplit

    def noise_multiplier(self, noise_shape: NoiseShape) -> float:
        """The trial's base multiplier: for a private search the smallest whose plan stays under the reference
        curve; for a public proxy the one that spends the target."""
        return self.budget.trial_multiplier(self.plan, noise_shape)

    def release_score(self, model: nn.Module, source: NoiseSource) -> tuple[float, StepRecord]:
        """The noised validation accuracy and its ledger record."""
        return released_score(model, self.validation, source), self.validation.release.record()

    def summary(self, score: float, accountable: PrivacyLedger) -> dict[str, Any]:
        """What the run's summary records about the search."""
        if isinstance(self.budget, PublicTarget):
            return {"trial": self.trial_id, "validation_score": score, "validation_size": self.validation.size}
        within = self.budget.dominated(accountable)
        return {
            "trial": self.trial_id,
            "validation_score": score,
            "epsilon_search": self.budget.total_epsilon if within else math.inf,
            "search": {
                "trials_mean": self.budget.trials.mean,
                "trials_shape": self.budget.trials.shape,
                "reference_noise_multiplier": self.budget.reference_multiplier,
                "within_reference_curve": within,
                "validation_size": self.validation.size,
                "score_noise": self.validation.release.noise_std,
            },
        }


def prepare_trial(
    tune: Mapping[str, Any],
    data: DatasetSplits,
    releases: tuple[StatisticsRelease, ...],
    target_epsilon: float,
    delta: float,
    batch_size: int,
    epochs: int,
) -> tuple[DatasetSplits, Trial | None]:
    """The trial's training data (without the validation split) and its :class:`Trial`; for the run that applies
    a public proxy's choice to the private data, the data untouched and no trial."""
    public = tune.get("tuned_on") is not None
    if public and tune.get("trial") is None:
        return data, None
    data, validation = carve_validation(
        data, float(tune["validation_fraction"]), float(tune["score_noise"]), int(tune["split_seed"])
    )
    releases = (*releases, validation.release)
    plan = TrainingPlan(data.train_size, batch_size, epochs, releases)
    if public:
        return data, Trial(str(tune["trial"]), plan, PublicTarget(target_epsilon, delta, str(tune["accountant"])),
                           validation)
    reference = TrainingPlan(
        data.train_size, int(tune["reference_batch_size"]), int(tune["reference_epochs"]), releases
    )
    budget = SearchBudget(
        target_epsilon, delta, TrialCount(float(tune["trials_mean"]), float(tune["trials_shape"])), reference
    )
    return data, Trial(str(tune["trial"]), plan, budget, validation)
