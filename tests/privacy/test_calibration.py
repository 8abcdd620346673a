"""Noise calibration spends the target epsilon exactly (within 1% below), schedules included."""

import pytest

from dpbench.privacy.accountant import epsilon, epsilon_independent
from dpbench.privacy.calibration import (
    PrivacyConfigError,
    TrainingPlan,
    calibrate_noise_multiplier,
    planned_ledger,
    validate_privacy_target,
)
from dpbench.privacy.statistics_release import StatisticsRelease


@pytest.mark.parametrize("target", [0.5, 3.0, 8.0])
def test_calibrated_constant_noise_spends_target_within_one_percent(target):
    plan = TrainingPlan(dataset_size=60000, expected_batch_size=512, epochs=10)
    z = calibrate_noise_multiplier(target, 1e-5, plan)
    ledger = planned_ledger(plan, z, lambda step, epoch: 1.0)
    spent = epsilon(ledger, 1e-5)
    assert 0.99 * target <= spent <= target
    assert epsilon_independent(ledger, 1e-5) == pytest.approx(spent, rel=0.01)


def test_calibrated_schedule_spends_target_within_one_percent():
    plan = TrainingPlan(dataset_size=10000, expected_batch_size=100, epochs=5)
    shape = lambda step, epoch: 2.0 - 0.2 * epoch  # noqa: E731  (data-independent decay)
    z = calibrate_noise_multiplier(2.0, 1e-6, plan, shape)
    spent = epsilon(planned_ledger(plan, z, shape), 1e-6)
    assert 0.99 * 2.0 <= spent <= 2.0
    # A constant-noise calibration would be wrong for this schedule.
    z_constant = calibrate_noise_multiplier(2.0, 1e-6, plan)
    assert epsilon(planned_ledger(plan, z_constant, shape), 1e-6) < 0.9 * 2.0


def test_plan_steps():
    plan = TrainingPlan(dataset_size=60000, expected_batch_size=512, epochs=40)
    assert plan.steps_per_epoch == 117
    assert plan.total_steps == 40 * 117
    assert plan.sampling_rate == pytest.approx(512 / 60000)


@pytest.mark.parametrize(
    "epsilon_target, delta, batch, epochs, message",
    [
        (0.0, 1e-5, 100, 1, "epsilon"),
        (-1.0, 1e-5, 100, 1, "epsilon"),
        (float("inf"), 1e-5, 100, 1, "epsilon"),
        (3.0, 1e-3, 100, 1, "1/N"),
        (3.0, 0.0, 100, 1, "1/N"),
        (3.0, 1e-5, 20000, 1, "q must be in"),
        (3.0, 1e-5, 100, 0, "epochs"),
        (3.0, 1e-5, 100.5, 1, "not an integer"),
    ],
)
def test_impossible_settings_are_refused_with_reason(epsilon_target, delta, batch, epochs, message):
    plan = TrainingPlan(dataset_size=10000, expected_batch_size=batch, epochs=epochs)
    with pytest.raises(PrivacyConfigError, match=message):
        validate_privacy_target(epsilon_target, delta, plan)


def test_statistics_released_before_training_are_part_of_the_spent_budget():
    release = StatisticsRelease("marginals", bound=7.0, noise_multiplier=4.0)
    plan = TrainingPlan(dataset_size=50000, expected_batch_size=1024, epochs=5, releases=(release,))
    z = calibrate_noise_multiplier(4.0, 1e-5, plan)
    ledger = planned_ledger(plan, z, lambda step, epoch: 1.0)
    assert list(ledger)[0] == release.record()
    spent = epsilon(ledger, 1e-5)
    assert 0.99 * 4.0 <= spent <= 4.0
    assert epsilon_independent(ledger, 1e-5, "pld") <= spent  # PLD is tighter, never looser
    # The steps get less budget than without the release, so more noise.
    without = calibrate_noise_multiplier(4.0, 1e-5, TrainingPlan(50000, 1024, 5))
    assert z > without


def test_a_release_that_spends_the_whole_budget_is_refused():
    plan = TrainingPlan(50000, 1024, 5, releases=(StatisticsRelease("marginals", 7.0, 0.3),))
    with pytest.raises(PrivacyConfigError, match="marginals.*nothing is left for training"):
        calibrate_noise_multiplier(4.0, 1e-5, plan)
