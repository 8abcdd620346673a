"""One trial of a private search, as the run sees it (a run whose config has a ``tune`` block).

Before training, a validation split is carved from the private training set and the trial's noise is
calibrated under the search's reference curve (:class:`~dpbench.privacy.search_budget.SearchBudget`),
with the noised validation score as one more release in the plan. After training, the score is
released through the kernel and recorded in the ledger; the summary gets the score, the search's total
epsilon (valid only if the trial's accountable ledger is under the reference curve, checked) and the
trial's own epsilon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from dpbench.data import DatasetSplits
from dpbench.privacy.calibration import NoiseShape, TrainingPlan
from dpbench.privacy.ledger import PrivacyLedger, StepRecord
from dpbench.privacy.noise import NoiseSource
from dpbench.privacy.search_budget import SearchBudget
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.privacy.tuning import TrialCount
from dpbench.training.validation import ValidationSplit, carve_validation, released_score


@dataclass(frozen=True)
class Trial:
    """The trial's id, its plan, the search's budget and the validation split it is selected by."""

    trial_id: str
    plan: TrainingPlan
    budget: SearchBudget
    validation: ValidationSplit

    def noise_multiplier(self, noise_shape: NoiseShape) -> float:
        """The trial's base multiplier: the smallest whose plan stays under the reference curve."""
        return self.budget.trial_multiplier(self.plan, noise_shape)

    def release_score(self, model: nn.Module, source: NoiseSource) -> tuple[float, StepRecord]:
        """The noised validation accuracy and its ledger record."""
        return released_score(model, self.validation, source), self.validation.release.record()

    def summary(self, score: float, accountable: PrivacyLedger) -> dict[str, Any]:
        """What the run's summary records about the search."""
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
) -> tuple[DatasetSplits, Trial]:
    """The trial's training data (without the validation split) and its :class:`Trial`."""
    data, validation = carve_validation(
        data, float(tune["validation_fraction"]), float(tune["score_noise"]), int(tune["split_seed"])
    )
    releases = (*releases, validation.release)
    plan = TrainingPlan(data.train_size, batch_size, epochs, releases)
    reference = TrainingPlan(
        data.train_size, int(tune["reference_batch_size"]), int(tune["reference_epochs"]), releases
    )
    budget = SearchBudget(
        target_epsilon, delta, TrialCount(float(tune["trials_mean"]), float(tune["trials_shape"])), reference
    )
    return data, Trial(str(tune["trial"]), plan, budget, validation)
