"""The cost of private hyper-parameter tuning, checked against the paper's closed form (computed here,
independently of dp_accounting), and the law of the number of trials checked against draws."""

import math

import numpy as np
import pytest
from scipy import stats

from dpbench.privacy.accountant import RDP_ORDERS, epsilon, tuning_epsilon
from dpbench.privacy.calibration import TrainingPlan, calibrate_noise_multiplier, planned_ledger
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.statistics_release import StatisticsRelease
from dpbench.privacy.tuning import TrialCount, truncated_negative_binomial_mean

DELTA = 1e-5


def rdp_to_epsilon(orders: np.ndarray, rdp: np.ndarray, delta: float) -> float:
    """The RDP-to-(epsilon, delta) conversion of Canonne, Kamath & Steinke (2020), Proposition 12."""
    eps = rdp + np.log1p(-1 / orders) - (math.log(delta) + np.log(orders)) / (orders - 1)
    return float(np.min(np.maximum(eps, 0.0)))


def closed_form_tuning_epsilon(sigma: float, mean: float, shape: float) -> float:
    """Papernot & Steinke (2022), Theorem 2, for one Gaussian trial of multiplier ``sigma`` (RDP
    lambda / (2 sigma^2)) and a truncated negative binomial number of trials; then monotonicity in the
    order, then the conversion above."""
    orders = np.array([o for o in RDP_ORDERS if o > 1])
    base = orders / (2 * sigma**2)
    gamma = TrialCount(mean, shape).gamma
    constant = (1 + shape) * np.min((1 - 1 / orders) * base + math.log(1 / gamma) / orders)
    tuned = base + constant + math.log(mean) / (orders - 1)
    tuned = np.minimum.accumulate(tuned[::-1])[::-1]  # RDP is non-decreasing in the order
    return rdp_to_epsilon(orders, tuned, DELTA)


def gaussian_trial(sigma: float) -> PrivacyLedger:
    return PrivacyLedger([StatisticsRelease("trial", 1.0, sigma).record()])


@pytest.mark.parametrize("mean, shape", [(10.0, 1.0), (5.0, 1.0), (10.0, 0.5), (20.0, 2.0)])
@pytest.mark.parametrize("sigma", [2.0, 5.0])
def test_tuning_epsilon_is_the_papers_closed_form(sigma, mean, shape):
    expected = closed_form_tuning_epsilon(sigma, mean, shape)
    assert tuning_epsilon(gaussian_trial(sigma), TrialCount(mean, shape), DELTA) == pytest.approx(expected, rel=1e-6)


def test_tuning_costs_more_than_one_trial_and_less_than_composing_the_mean_number():
    trial = gaussian_trial(3.0)
    one = epsilon(trial, DELTA)
    tuned = tuning_epsilon(trial, TrialCount(10.0, 1.0), DELTA)
    ten = epsilon(PrivacyLedger(list(trial) * 10), DELTA)
    assert one < tuned < ten


@pytest.mark.parametrize("mean, shape", [(10.0, 1.0), (4.0, 0.0), (8.0, 0.5), (6.0, 3.0)])
def test_gamma_inverts_the_mean(mean, shape):
    assert truncated_negative_binomial_mean(TrialCount(mean, shape).gamma, shape) == pytest.approx(mean, rel=1e-9)


def law_moments(count: TrialCount) -> tuple[float, float]:
    """Mean and variance of K from its probability mass function (independent of the sampler)."""
    if count.is_poisson:
        return count.mean, count.mean
    gamma, shape = count.gamma, count.shape
    k = np.arange(1, 20_000)
    if shape == 0:
        pmf = (1 - gamma) ** k / (k * math.log(1 / gamma))
    else:
        pmf = stats.nbinom.pmf(k, shape, gamma) / (1 - gamma**shape)
    return float((k * pmf).sum()), float((k**2 * pmf).sum() - (k * pmf).sum() ** 2)


@pytest.mark.parametrize(
    "count", [TrialCount(10.0, 1.0), TrialCount(6.0, 0.0), TrialCount(8.0, 2.0), TrialCount(7.0, math.inf)]
)
def test_draws_of_k_follow_their_law(count):
    rng = np.random.default_rng(0)
    draws = np.array([count.sample(rng) for _ in range(40_000)])
    mean, variance = law_moments(count)
    assert mean == pytest.approx(count.mean, rel=1e-6)
    assert abs(draws.mean() - mean) < 4 * math.sqrt(variance / len(draws))
    assert draws.var() == pytest.approx(variance, rel=0.08)
    assert count.is_poisson or draws.min() >= 1


def test_calibration_pays_for_tuning_inside_the_target():
    trials = TrialCount(10.0, 1.0)
    plan = TrainingPlan(60_000, 512, 5, releases=(StatisticsRelease("validation_score", 1.0, 20.0),))
    z = calibrate_noise_multiplier(3.0, DELTA, plan, trials=trials)
    spent = tuning_epsilon(planned_ledger(plan, z, lambda step, epoch: 1.0), trials, DELTA)
    assert 0.99 * 3.0 <= spent <= 3.0
    assert z > calibrate_noise_multiplier(3.0, DELTA, plan)


@pytest.mark.parametrize("mean, shape", [(0.5, 1.0), (math.nan, 1.0), (5.0, -1.0)])
def test_impossible_trial_laws_are_refused(mean, shape):
    with pytest.raises(ValueError):
        TrialCount(mean, shape)
