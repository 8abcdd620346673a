"""External verification of researcher-form plugins: measured noise, sensitivity and state leaks,
and the epsilon that follows from what was measured rather than from what the plugin claims."""

from dpbench.verification.epsilon import EpsilonCheck, EpsilonEstimate, cross_checked_epsilon, epsilon_check
from dpbench.verification.findings import (
    LEAK,
    UNVERIFIED,
    VERIFIED,
    VIOLATION,
    Finding,
    PrivacyLeakError,
    PrivacyViolationError,
    ProbeRecord,
    VerificationError,
    VerificationReport,
)
from dpbench.verification.verifier import PluginVerifier, UnverifiableLedgerError

__all__ = [
    "LEAK",
    "UNVERIFIED",
    "VERIFIED",
    "VIOLATION",
    "EpsilonCheck",
    "EpsilonEstimate",
    "Finding",
    "PluginVerifier",
    "PrivacyLeakError",
    "PrivacyViolationError",
    "ProbeRecord",
    "UnverifiableLedgerError",
    "VerificationError",
    "VerificationReport",
    "cross_checked_epsilon",
    "epsilon_check",
]
