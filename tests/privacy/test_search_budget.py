"""One budget for a whole private search: the reference trial spends the target with tuning included,
and every trial, whatever its plan or noise schedule, is calibrated to stay under the reference curve
(checked by dp_accounting's tuning epsilon of the trial itself, an independent computation)."""

import pytest

from dpbench.privacy.accountant import tuning_epsilon
from dpbench.privacy.calibration import PrivacyConfigError, TrainingPlan, planned_ledger
from dpbench.privacy.search_budget import SearchBudget
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.privacy.tuning import TrialCount

DELTA = 1e-5
SCORE = (StatisticsRelease("validation_score", 1.0, 20.0),)
REFERENCE = TrainingPlan(20_000, 400, 4, releases=SCORE)


@pytest.fixture(scope="module")
def budget() -> SearchBudget:
    return SearchBudget(3.0, DELTA, TrialCount(8.0, 1.0), REFERENCE)


def test_the_whole_search_spends_the_target(budget):
    assert 0.99 * 3.0 <= budget.total_epsilon <= 3.0


def test_a_trial_with_the_reference_plan_gets_the_reference_noise(budget):
    assert budget.trial_multiplier(REFERENCE) == budget.reference_multiplier


def decay(step, epoch):
    return 1.0 - 0.15 * epoch


@pytest.mark.parametrize(
    "plan, shape",
    [
        (TrainingPlan(20_000, 800, 4, releases=SCORE), None),
        (TrainingPlan(20_000, 200, 6, releases=SCORE), None),
        (REFERENCE, decay),
    ],
    ids=["double batch", "half batch, more epochs", "decaying noise"],
)
def test_every_trial_stays_within_the_search_budget(budget, plan, shape):
    args = () if shape is None else (shape,)
    z = budget.trial_multiplier(plan, *args)
    ledger = planned_ledger(plan, z, shape or (lambda step, epoch: 1.0))
    assert budget.dominated(ledger)
    assert tuning_epsilon(ledger, budget.trials, DELTA) <= budget.total_epsilon * (1 + 1e-9)
    tighter = planned_ledger(plan, z / 1.01, shape or (lambda step, epoch: 1.0))
    assert not budget.dominated(tighter)  # the smallest such noise, to within 1%


def test_a_trial_must_make_the_reference_releases(budget):
    with pytest.raises(PrivacyConfigError, match="same statistics releases"):
        budget.trial_multiplier(TrainingPlan(20_000, 400, 4))
