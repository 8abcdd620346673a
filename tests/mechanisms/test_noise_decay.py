"""Noise decay: the schedules' values, the calibration spending the target exactly with every step
accounted at its own multiplier, and refusal of schedules that make no sense."""

import math

import pytest
import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.accountant import epsilon, epsilon_independent
from dpbench.privacy.calibration import TrainingPlan, calibrate_noise_multiplier, planned_ledger
from dpbench.privacy.ledger import PrivacyLedger, StepRecord
from dpbench.privacy.privatizer import StructuredPrivatizer
from mechanisms.noise_decay import NoiseDecay


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"schedule": "step", "gamma": 0.5, "every": 2}, [1, 1, 0.5, 0.5, 0.25]),
        ({"schedule": "exponential", "end_ratio": 0.25}, [1, 0.25**0.25, 0.5, 0.25**0.75, 0.25]),
        ({"schedule": "linear", "end_ratio": 0.2}, [1, 0.8, 0.6, 0.4, 0.2]),
        (
            {"schedule": "cosine", "end_ratio": 0.2},
            [1, 0.2 + 0.4 * (1 + math.cos(math.pi / 4)), 0.6, 0.2 + 0.4 * (1 - math.cos(math.pi / 4)), 0.2],
        ),
    ],
)
def test_schedule_is_constant_within_an_epoch_and_follows_its_formula(options, expected):
    mechanism = NoiseDecay(1.0, epochs=5, **options)
    assert [
        mechanism.noise_shape(step, epoch) for epoch in range(5) for step in (10 * epoch, 10 * epoch + 9)
    ] == pytest.approx([value for value in expected for _ in range(2)])


def test_calibrated_decay_spends_the_target_with_every_step_at_its_own_multiplier():
    plan = TrainingPlan(dataset_size=2000, expected_batch_size=50, epochs=5)
    target, delta = 2.0, 1e-5
    mechanism = NoiseDecay(1.0, epochs=plan.epochs, schedule="exponential", end_ratio=0.3)
    z = calibrate_noise_multiplier(target, delta, plan, mechanism.noise_shape)

    kernel = StructuredPrivatizer(
        mechanism, [torch.Size([3])], z, plan.expected_batch_size, plan.sampling_rate, torch.Generator().manual_seed(0)
    )
    grads = MaterializedGradients([torch.randn(50, 3)])
    ledger = PrivacyLedger(kernel.release([grads], t, plan.epoch_of(t)).record for t in range(plan.total_steps))
    multipliers = [record.noise_multiplier for record in ledger]
    assert multipliers == pytest.approx([z * 0.3 ** (plan.epoch_of(t) / 4) for t in range(plan.total_steps)])
    assert len(set(multipliers)) == plan.epochs

    spent = epsilon(ledger, delta)
    assert 0.99 * target <= spent <= target
    assert epsilon_independent(ledger, delta) == pytest.approx(spent, rel=0.01)
    assert spent == pytest.approx(epsilon(planned_ledger(plan, z, mechanism.noise_shape), delta), rel=1e-9)
    # Accounting the schedule as its mean multiplier would under-report what was spent.
    mean = sum(multipliers) / len(multipliers)
    as_mean = PrivacyLedger(
        StepRecord(r.step, r.epoch, r.sampling_rate, mean, r.sensitivity, "mean", "harness") for r in ledger
    )
    assert epsilon(as_mean, delta) < 0.95 * spent


@pytest.mark.parametrize(
    "options, message",
    [
        ({"schedule": "warmup"}, "schedule 'warmup' is unknown"),
        ({"schedule": "exponential", "end_ratio": 0.0}, "end_ratio .* must be finite and > 0"),
        ({"schedule": "linear", "end_ratio": -0.5}, "end_ratio .* must be finite and > 0"),
        ({"schedule": "cosine", "end_ratio": math.inf}, "end_ratio .* must be finite and > 0"),
        ({"schedule": "step", "gamma": 0.0}, "gamma must be finite and > 0"),
        ({"schedule": "step", "every": 0}, "every must be a whole number of epochs"),
        ({"schedule": "linear", "epochs": 0}, "number of epochs"),
    ],
)
def test_invalid_schedules_are_refused_with_the_reason(options, message):
    with pytest.raises(ValueError, match=message):
        NoiseDecay(1.0, **{"epochs": 5, **options})
