"""The primary accountant against dp_accounting, an independent implementation."""

import math

import pytest

from dpbench.privacy.accountant import INTEGER_ORDERS, check_accountants_agree, epsilon, epsilon_independent
from dpbench.privacy.ledger import PrivacyLedger, StepRecord


def ledger_of(sampling_rate: float, multipliers: list[float]) -> PrivacyLedger:
    return PrivacyLedger(
        StepRecord(t, 0, sampling_rate, z, 1.0, "test", "harness") for t, z in enumerate(multipliers)
    )


def test_abadi_setting_matches_dp_accounting_rdp():
    q, steps = 256 / 60000, 60 * round(60000 / 256)
    ledger = ledger_of(q, [1.1] * steps)
    primary = epsilon(ledger, 1e-5)
    independent = epsilon_independent(ledger, 1e-5, "rdp")
    assert primary == pytest.approx(independent, rel=0.01)
    # A known value of this classic setting (Abadi et al. 2016 report 8 under the moments accountant);
    # modern RDP conversions give about 2.6 - a wildly different number would mean a wrong composition.
    assert 2.0 < primary < 3.5


@pytest.mark.slow
def test_heterogeneous_schedule_matches_dp_accounting_rdp():
    q = 512 / 60000
    multipliers = [0.8 + 1.2 * math.cos(math.pi * t / 300) ** 2 for t in range(300)]
    ledger = ledger_of(q, multipliers)
    assert epsilon(ledger, 1e-5) == pytest.approx(epsilon_independent(ledger, 1e-5, "rdp"), rel=0.01)


def test_whole_history_is_composed_not_the_latest_sigma():
    q = 0.01
    decaying = ledger_of(q, [0.6] * 500 + [3.0] * 500)
    latest_only = ledger_of(q, [3.0] * 1000)
    assert epsilon(decaying, 1e-5) > 2 * epsilon(latest_only, 1e-5)


def test_pld_is_tighter_than_rdp():
    ledger = ledger_of(0.01, [1.0] * 1000)
    assert epsilon_independent(ledger, 1e-5, "pld") < epsilon(ledger, 1e-5)


def test_empty_ledger_spends_nothing():
    assert epsilon(PrivacyLedger(), 1e-5) == 0.0


def test_invalid_delta_and_accountant_are_refused():
    ledger = ledger_of(0.01, [1.0])
    with pytest.raises(ValueError, match="delta"):
        epsilon(ledger, 0.0)
    with pytest.raises(ValueError, match="unknown accountant"):
        epsilon(ledger, 1e-5, accountant="moments")


def test_records_refuse_impossible_values():
    with pytest.raises(ValueError, match="noise multiplier"):
        StepRecord(0, 0, 0.1, 0.0, 1.0, "m", "harness")
    with pytest.raises(ValueError, match="sampling rate"):
        StepRecord(0, 0, 1.5, 1.0, 1.0, "m", "harness")


def test_accountants_agree_on_integer_orders_even_for_large_sampling_rates():
    ledger = ledger_of(256 / 1437, [1.25] * 180)
    check_accountants_agree(ledger, 1e-5, tolerance=1e-3)
    assert epsilon(ledger, 1e-5) <= epsilon(ledger, 1e-5, orders=INTEGER_ORDERS)


def test_disagreeing_accountants_are_an_error(monkeypatch):
    import dpbench.privacy.accountant as accountant

    real = accountant.epsilon_independent
    monkeypatch.setattr(accountant, "epsilon_independent", lambda *a, **k: 1.05 * real(*a, **k))
    with pytest.raises(ArithmeticError, match="accountants disagree"):
        check_accountants_agree(ledger_of(0.01, [1.0] * 100), 1e-5)


# ------------------------------------------------------------------------------ privacy.accountant
def mnist_like_ledger(z: float = 1.1, steps: int = 2000) -> PrivacyLedger:
    return PrivacyLedger([StepRecord(t, 0, 512 / 60000, z, 1.0, "x", "harness") for t in range(steps)])


def test_pld_and_prv_are_independent_implementations_that_agree():
    ledger = mnist_like_ledger()
    pld, prv = epsilon(ledger, 1e-5, "pld"), epsilon(ledger, 1e-5, "prv")
    assert pld == pytest.approx(prv, rel=0.01)
    assert pld < epsilon(ledger, 1e-5, "rdp")  # the numerical accountants are tighter than RDP
    for accountant in ("rdp", "pld", "prv"):
        check_accountants_agree(ledger, 1e-5, accountant=accountant)


@pytest.mark.slow
@pytest.mark.parametrize("accountant", ["pld", "prv"])
def test_calibration_spends_the_target_under_the_chosen_accountant(accountant):
    from dpbench.privacy.calibration import TrainingPlan, calibrate_noise_multiplier, planned_ledger

    plan = TrainingPlan(60_000, 512, 5)
    z = calibrate_noise_multiplier(3.0, 1e-5, plan, accountant=accountant)
    spent = epsilon(planned_ledger(plan, z, lambda step, epoch: 1.0), 1e-5, accountant)
    assert 0.99 * 3.0 <= spent <= 3.0
    assert z < calibrate_noise_multiplier(3.0, 1e-5, plan)  # less noise than RDP for the same target


def test_an_unknown_accountant_names_the_choices():
    with pytest.raises(ValueError, match="privacy.accountant to one of rdp, pld, prv"):
        epsilon(mnist_like_ledger(steps=3), 1e-5, "gdp")


def test_a_run_calibrates_and_reports_with_the_chosen_accountant(make_config, tmp_path):
    from dpbench.training.experiment import run_experiment

    summary = run_experiment(make_config("privacy.accountant=pld", "train.epochs=1"), tmp_path / "run")
    assert 0.99 * 3.0 <= summary["epsilon"] <= 3.0
    assert summary["epsilon"] == pytest.approx(summary["epsilon_dp_accounting_pld"], rel=1e-6)
    assert summary["epsilon_dp_accounting_rdp"] > summary["epsilon"]
