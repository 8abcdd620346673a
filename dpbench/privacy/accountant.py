"""Epsilon of a ledger: the primary RDP accountant and independent cross-checks.

The primary accountant is Opacus's RDP analysis (Mironov et al. 2019, sampled Gaussian), composed
over the *whole* ledger, step by step, never extrapolated from the latest sigma. The independent
accountants are Google's dp_accounting RDP and PLD implementations, fed the same ledger as
``DpEvent`` s. No RDP formula is written in this project.
"""

from __future__ import annotations

import logging
import math

import dp_accounting
from opacus.accountants.analysis import rdp as opacus_rdp

from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.tuning import TrialCount

# Opacus's default orders, extended to large orders for small-epsilon regimes.
RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256, 512])
# Integer orders have closed forms in both libraries (fractional ones are series that dp_accounting
# sometimes drops for large q); the consistency check between the two accountants uses these.
INTEGER_ORDERS: tuple[float, ...] = tuple(range(2, 64)) + (80, 128, 256, 512)
ACCOUNTANTS = ("rdp",)


def epsilon(ledger: PrivacyLedger, delta: float, accountant: str = "rdp", orders: tuple[float, ...] = RDP_ORDERS) -> float:
    """(epsilon, delta)-DP guarantee of the whole ledger under the primary accountant."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant '{accountant}'; choose one of {ACCOUNTANTS}")
    _check_delta(delta)
    if len(ledger) == 0:
        return 0.0
    eps, _ = opacus_rdp.get_privacy_spent(orders=list(orders), rdp=rdp_curve(ledger, orders), delta=delta)
    return float(eps)


def rdp_curve(ledger: PrivacyLedger, orders: tuple[float, ...] = RDP_ORDERS) -> list[float]:
    """The ledger's Renyi DP at each order, composed by the primary accountant."""
    rdp = [0.0] * len(orders)
    for q, z, count in ledger.composition():
        step_rdp = opacus_rdp.compute_rdp(q=q, noise_multiplier=z, steps=count, orders=list(orders))
        rdp = [a + b for a, b in zip(rdp, step_rdp)]
    return rdp


def epsilon_independent(
    ledger: PrivacyLedger, delta: float, method: str = "rdp", orders: tuple[float, ...] = RDP_ORDERS
) -> float:
    """Epsilon of the same ledger computed by dp_accounting ("rdp" or "pld"), an implementation
    independent of the primary accountant."""
    _check_delta(delta)
    if len(ledger) == 0:
        return 0.0
    if method == "rdp":
        acc = dp_accounting.rdp.RdpAccountant(list(orders))
    elif method == "pld":
        acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    else:
        raise ValueError(f"unknown independent accountant '{method}'; choose 'rdp' or 'pld'")
    # dp_accounting drops fractional orders whose series does not converge (large q), warning each
    # time; dropping an order can only raise epsilon, so the result stays conservative: keep logs quiet.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        acc.compose(ledger.to_dp_event())
        return float(acc.get_epsilon(delta))
    finally:
        absl_logger.setLevel(level)


def tuning_epsilon(
    trial: PrivacyLedger, trials: TrialCount, delta: float, orders: tuple[float, ...] = RDP_ORDERS
) -> float:
    """Epsilon of releasing the best of K trials, K drawn from ``trials`` and kept secret, each trial
    spending ``trial`` (its training steps and the noised score it is selected by): dp_accounting's RDP
    accountant of ``RepeatAndSelectDpEvent`` (Papernot & Steinke 2022, Theorems 2 and 6)."""
    _check_delta(delta)
    acc = dp_accounting.rdp.RdpAccountant(list(orders))
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        acc.compose(trials.event(trial.to_dp_event()))
        return float(acc.get_epsilon(delta))
    finally:
        absl_logger.setLevel(level)


def _check_delta(delta: float) -> None:
    if not (0.0 < delta < 1.0) or math.isnan(delta):
        raise ValueError(f"delta must be in (0, 1), got {delta}")


class AccountantDisagreementError(ArithmeticError):
    """The primary and the independent RDP accountant disagree on the same ledger."""


def check_accountants_agree(ledger: PrivacyLedger, delta: float, tolerance: float = 0.01) -> None:
    """The primary and dp_accounting's RDP accountants must agree on the ledger (compared on the
    integer orders, where both are exact); a disagreement means one of them is fed or used wrongly."""
    primary = epsilon(ledger, delta, orders=INTEGER_ORDERS)
    independent = epsilon_independent(ledger, delta, "rdp", orders=INTEGER_ORDERS)
    if abs(primary - independent) > tolerance * max(independent, 1e-12):
        raise AccountantDisagreementError(
            f"accountants disagree on the same ledger: Opacus RDP epsilon {primary:.6f} vs dp_accounting RDP "
            f"{independent:.6f} (integer orders); the reported epsilon cannot be trusted"
        )
