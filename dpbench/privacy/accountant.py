"""Epsilon of a ledger: the configured accountant and an independent implementation to check it.

``privacy.accountant`` picks the accountant that calibrates the noise and reports epsilon:

- ``rdp`` (the default): Opacus's RDP analysis (Mironov et al. 2019, sampled Gaussian), checked
  against Google's dp_accounting RDP on the integer orders;
- ``pld``: dp_accounting's privacy loss distributions (tighter than RDP), checked against Opacus's PRV;
- ``prv``: Opacus's privacy random variables (Gopi et al. 2021), checked against dp_accounting's PLD.

Every accountant composes the *whole* ledger, step by step, never extrapolated from the latest sigma;
dp_accounting is fed the same ledger as ``DpEvent`` s. No accounting formula is written in this project.
"""

from __future__ import annotations

import logging
import math
import warnings

import dp_accounting
from opacus.accountants import PRVAccountant
from opacus.accountants.analysis import rdp as opacus_rdp

from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.tuning import TrialCount

# Opacus's default orders, extended to large orders for small-epsilon regimes.
RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256, 512])
# Integer orders have closed forms in both libraries (fractional ones are series that dp_accounting
# sometimes drops for large q); the consistency check between the two accountants uses these.
INTEGER_ORDERS: tuple[float, ...] = tuple(range(2, 64)) + (80, 128, 256, 512)
ACCOUNTANTS = ("rdp", "pld", "prv")
# The independent implementation each accountant is checked against, and the relative disagreement
# tolerated (the numerical accountants discretise the privacy loss, to about 1e-3 in epsilon each).
CROSS_CHECKS = {"rdp": ("dp_accounting RDP", 0.01), "pld": ("Opacus PRV", 0.03), "prv": ("dp_accounting PLD", 0.03)}


def epsilon(ledger: PrivacyLedger, delta: float, accountant: str = "rdp", orders: tuple[float, ...] = RDP_ORDERS) -> float:
    """(epsilon, delta)-DP guarantee of the whole ledger under ``accountant``."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(
            f"unknown accountant '{accountant}'; set privacy.accountant to one of {', '.join(ACCOUNTANTS)}"
        )
    _check_delta(delta)
    if len(ledger) == 0:
        return 0.0
    if accountant == "pld":
        return epsilon_independent(ledger, delta, "pld")
    if accountant == "prv":
        return prv_epsilon(ledger, delta)
    eps, _ = opacus_rdp.get_privacy_spent(orders=list(orders), rdp=rdp_curve(ledger, orders), delta=delta)
    return float(eps)


def prv_epsilon(ledger: PrivacyLedger, delta: float) -> float:
    """Epsilon of the ledger by Opacus's PRV accountant (its epsilon error set to 1e-3 of the result)."""
    prv = PRVAccountant()
    prv.history = [(z, q, count) for q, z, count in ledger.composition()]
    with warnings.catch_warnings():  # log(0) at the edge of the PRV's support, handled by Opacus
        warnings.simplefilter("ignore", RuntimeWarning)
        rough = prv.get_epsilon(delta, eps_error=0.05)
        return float(prv.get_epsilon(delta, eps_error=max(1e-3 * rough, 1e-4)))


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


def check_accountants_agree(
    ledger: PrivacyLedger, delta: float, tolerance: float | None = None, accountant: str = "rdp"
) -> None:
    """``accountant`` and its independent implementation (:data:`CROSS_CHECKS`) must agree on the ledger
    (RDP compared on the integer orders, where both libraries are exact); a disagreement means one of
    them is fed or used wrongly."""
    name, default_tolerance = CROSS_CHECKS[accountant]
    tolerance = default_tolerance if tolerance is None else tolerance
    if accountant == "rdp":
        primary = epsilon(ledger, delta, orders=INTEGER_ORDERS)
        independent = epsilon_independent(ledger, delta, "rdp", orders=INTEGER_ORDERS)
    elif accountant == "pld":
        primary, independent = epsilon(ledger, delta, "pld"), prv_epsilon(ledger, delta)
    else:
        primary, independent = epsilon(ledger, delta, "prv"), epsilon_independent(ledger, delta, "pld")
    if abs(primary - independent) > tolerance * max(independent, 1e-12):
        raise AccountantDisagreementError(
            f"accountants disagree on the same ledger: {accountant} epsilon {primary:.6f} vs {name} "
            f"{independent:.6f}; the reported epsilon cannot be trusted"
        )
