"""What verification found: probe records, findings, the verdict, and the exceptions of strict mode."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

VERIFIED, VIOLATION, LEAK, UNVERIFIED = "VERIFIED", "VIOLATION", "LEAK", "UNVERIFIED"


@dataclass(frozen=True)
class Finding:
    """A violation (measured multiplier below the claim) or a leak (state that reads raw data)."""

    kind: str  # "violation" or "leak"
    step: int
    epoch: int
    probe: str  # the probe example, "state:<path>" or "fresh-instance"
    claimed: float
    measured: float | None  # point estimate of the effective multiplier (None for a leak)
    upper: float | None  # its upper confidence bound
    detail: str

    def describe(self) -> str:
        if self.kind == "leak":
            return f"LEAK at step {self.step} (epoch {self.epoch}): {self.probe}: {self.detail}"
        return (
            f"VIOLATION at step {self.step} (epoch {self.epoch}): claimed sigma {self.claimed:.4g}, measured "
            f"{self.measured:.4g} (upper bound {self.upper:.4g}) by probe '{self.probe}': {self.detail}"
        )

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ProbeRecord:
    """One probed step: the claim, the measured effective multiplier (gradient and state channels
    composed) with its upper bound, and whether the claim stands."""

    step: int
    epoch: int
    claimed: float
    measured: float
    upper: float
    passed: bool
    worst_probe: str
    directions: tuple[dict, ...]
    channels: tuple[dict, ...]
    post_processing: tuple[str, ...]
    leaks: tuple[str, ...]
    batch_size: int
    noise_shape: dict | None = None  # the Gaussianity tests, this probe's and the run's pool (None: older records)

    def to_dict(self) -> dict:
        return _finite(asdict(self))


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass
class VerificationReport:
    verdict: str
    findings: list[Finding]
    probes: list[ProbeRecord]
    steps_observed: int
    probe_seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def dropped_for_budget(self) -> int:
        return int(self.settings.get("skipped_for_budget", 0))

    @property
    def coverage(self) -> str:
        """How much was measured: k of n steps, and the probes the overhead cap dropped."""
        text = f"{len(self.probes)} of {self.steps_observed} steps measured; the other steps carry the claim"
        if self.dropped_for_budget:
            text += (
                f"; {self.dropped_for_budget} extra probes dropped to keep probing under "
                f"{self.settings['max_overhead']:.0%} of training time"
            )
        return text

    def describe(self) -> str:
        """The verdict with its coverage, e.g. ``VERIFIED (3 of 120 steps measured; ...)``."""
        return f"{self.verdict} ({self.coverage})"

    @property
    def confidence(self) -> str:
        s = self.settings
        skipped = f" ({s['skipped_for_budget']} scheduled probes skipped to keep probing under {s['max_overhead']:.0%} of training time)" if s.get("skipped_for_budget") else ""
        return (
            f"{len(self.probes)} probed steps of {self.steps_observed}{skipped}; per probe {s.get('draws')} noise draws and "
            f"{s.get('probes_per_step')} neighbouring batches; a step is a violation when the upper "
            f"{1 - s.get('alpha', 0):.6g}-confidence bound of its effective multiplier is below "
            f"{s.get('threshold')} x the claim (shortfalls within that resolution are measurement noise)"
        )

    def summary(self) -> str:
        lines = [self.describe(), self.confidence]
        lines += [f.describe() for f in self.findings]
        if self.probes:
            worst = min(self.probes, key=lambda p: p.measured / p.claimed)
            lines.append(
                f"lowest measured/claimed ratio {worst.measured / worst.claimed:.3f} at step {worst.step} "
                f"(claimed {worst.claimed:.4g}, measured {worst.measured:.4g}, probe '{worst.worst_probe}')"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "probes": [p.to_dict() for p in self.probes],
            "steps_observed": self.steps_observed,
            "steps_probed": len(self.probes),
            "steps_measured": len(self.probes),
            "steps_total": self.steps_observed,
            "dropped_for_budget": self.dropped_for_budget,
            "coverage": self.coverage,
            "probe_seconds": self.probe_seconds,
            "confidence": self.confidence,
            "settings": self.settings,
        }


def verdict_of(findings: list[Finding], probes: list[ProbeRecord]) -> str:
    """LEAK (no epsilon can be verified) before VIOLATION before VERIFIED; UNVERIFIED without probes."""
    if any(f.kind == "leak" for f in findings):
        return LEAK
    if findings:
        return VIOLATION
    return VERIFIED if probes else UNVERIFIED


class VerificationError(RuntimeError):
    """Strict verification stopped the run at a finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.describe())
        self.finding = finding


class PrivacyViolationError(VerificationError):
    """A plugin's measured noise multiplier is below what it claims."""


class PrivacyLeakError(VerificationError):
    """A plugin keeps state that is a non-private function of raw data."""
