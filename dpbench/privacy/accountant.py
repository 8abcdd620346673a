"""Epsilon of a ledger: the primary RDP accountant and independent cross-checks.

The primary accountant is Opacus's RDP analysis (Mironov et al. 2019, sampled Gaussian), composed
over the *whole* ledger, step by step, never extrapolated from the latest sigma. The independent
accountants are Google's dp_accounting RDP and PLD implementations, fed the same ledger as
``DpEvent`` s. No RDP formula is written in this project.
"""

from __future__ import annotations

import math

import dp_accounting
from opacus.accountants.analysis import rdp as opacus_rdp

from dpbench.privacy.ledger import PrivacyLedger

# Opacus's default orders, extended to large orders for small-epsilon regimes.
RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256, 512])
ACCOUNTANTS = ("rdp",)


def epsilon(ledger: PrivacyLedger, delta: float, accountant: str = "rdp") -> float:
    """(epsilon, delta)-DP guarantee of the whole ledger under the primary accountant."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant '{accountant}'; choose one of {ACCOUNTANTS}")
    _check_delta(delta)
    if len(ledger) == 0:
        return 0.0
    rdp = [0.0] * len(RDP_ORDERS)
    for q, z, count in ledger.composition():
        step_rdp = opacus_rdp.compute_rdp(q=q, noise_multiplier=z, steps=count, orders=list(RDP_ORDERS))
        rdp = [a + b for a, b in zip(rdp, step_rdp)]
    eps, _ = opacus_rdp.get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)
    return float(eps)


def epsilon_independent(ledger: PrivacyLedger, delta: float, method: str = "rdp") -> float:
    """Epsilon of the same ledger computed by dp_accounting ("rdp" or "pld"), an implementation
    independent of the primary accountant."""
    _check_delta(delta)
    if len(ledger) == 0:
        return 0.0
    if method == "rdp":
        acc = dp_accounting.rdp.RdpAccountant(list(RDP_ORDERS))
    elif method == "pld":
        acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    else:
        raise ValueError(f"unknown independent accountant '{method}'; choose 'rdp' or 'pld'")
    acc.compose(ledger.to_dp_event())
    return float(acc.get_epsilon(delta))


def _check_delta(delta: float) -> None:
    if not (0.0 < delta < 1.0) or math.isnan(delta):
        raise ValueError(f"delta must be in (0, 1), got {delta}")
