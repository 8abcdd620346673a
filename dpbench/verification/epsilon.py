"""Epsilon of a ledger, recomputed independently: the primary accountant cross-checked by
dp_accounting's RDP (a disagreement beyond tolerance is an error) with dp_accounting's PLD beside
it; and the claimed epsilon of a plugin run next to the verified one."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dpbench.privacy.accountant import check_accountants_agree, epsilon, epsilon_independent
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.verification.findings import LEAK
from dpbench.verification.verifier import PluginVerifier, UnverifiableLedgerError

# Below this multiplier dp_accounting's PLD takes tens of seconds per distinct multiplier and epsilon
# is in the tens anyway; PLD is then not computed (nan).
PLD_MIN_MULTIPLIER = 0.3


@dataclass(frozen=True)
class EpsilonEstimate:
    """Primary RDP, dp_accounting RDP and dp_accounting PLD epsilon (nan: not computed, see PLD_MIN_MULTIPLIER)."""

    primary: float
    rdp: float
    pld: float

    def to_dict(self) -> dict:
        return {k: (v if math.isfinite(v) else None) for k, v in asdict(self).items()}


UNBOUNDED = EpsilonEstimate(math.inf, math.inf, math.inf)


def cross_checked_epsilon(
    ledger: PrivacyLedger, delta: float, tolerance: float | None = None, accountant: str = "rdp"
) -> EpsilonEstimate:
    """Epsilon by ``accountant`` with dp_accounting's RDP and PLD beside it; raises
    :class:`~dpbench.privacy.accountant.AccountantDisagreementError` if ``accountant`` and its independent
    implementation disagree."""
    check_accountants_agree(ledger, delta, tolerance, accountant)
    primary = epsilon(ledger, delta, accountant)
    rdp = epsilon_independent(ledger, delta, "rdp")
    smallest = min((r.noise_multiplier for r in ledger), default=math.inf)
    pld = epsilon_independent(ledger, delta, "pld") if smallest >= PLD_MIN_MULTIPLIER else math.nan
    return EpsilonEstimate(primary, rdp, pld)


@dataclass(frozen=True)
class EpsilonCheck:
    """Claimed and verified epsilon of one run; ``verified`` is infinite when nothing finite can be verified."""

    claimed: EpsilonEstimate
    verified: EpsilonEstimate
    basis: str

    def to_dict(self) -> dict:
        return {"claimed": self.claimed.to_dict(), "verified": self.verified.to_dict(), "basis": self.basis}


def epsilon_check(
    verifier: PluginVerifier, claimed: PrivacyLedger, delta: float, accountant: str = "rdp"
) -> EpsilonCheck:
    claimed_epsilon = cross_checked_epsilon(claimed, delta, accountant=accountant)
    report = verifier.report()
    try:
        verified_ledger = verifier.verified_ledger(claimed)
    except UnverifiableLedgerError as error:
        return EpsilonCheck(claimed_epsilon, UNBOUNDED, str(error))
    verified = (
        claimed_epsilon if verified_ledger == claimed
        else cross_checked_epsilon(verified_ledger, delta, accountant=accountant)
    )
    basis = {
        "VERIFIED": "claimed multipliers confirmed by measurement at every probed step",
        "VIOLATION": "min(claimed, measured) multiplier per step, carried forward from the latest probe",
        "UNVERIFIED": "not verified (probing off)",
    }[report.verdict] if report.verdict != LEAK else "leak"
    return EpsilonCheck(claimed_epsilon, verified, basis)
