"""Empirical privacy audit in one training run (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with
One (1) Training Run"): an epsilon *lower bound* measured on the trained model, with its confidence.

The audit draws m canaries, each included in the training set independently with probability 1/2
(Poisson sampling then treats an included canary like any other example), trains, scores every
canary, guesses "included" for the k highest scores and "excluded" for the k lowest, and counts the
correct guesses. If training is (epsilon, delta)-DP with respect to adding or removing one example,
Theorem 3 of the paper bounds the probability of that many correct guesses; the largest epsilon the
count rejects at significance 1 - confidence is the lower bound (:func:`epsilon_lower_bound`). A
lower bound above the run's verified epsilon is a violation: the run leaks more than it accounts for.

The canaries are inputs of standard Gaussian pixels (out of distribution for normalized images) with
uniformly random labels; the score of a canary is minus its loss under the trained model. A model
that is not private memorises the included ones (low loss) and stays at chance on the excluded ones,
which gives a usable signal at small scale; a private model barely moves on any single canary. The
attack is black box (it needs only the final model's losses) and so, like every one-run audit, a
lower bound only: a bound near 0 does not show that a run is private, a bound above epsilon shows
that it is not (wrong with probability at most 1 - confidence).

The audited run is a separate run from the benchmark run: its training set holds the included
canaries, so N, the sampling rate q = B / N and the calibrated noise all follow the augmented N.
N (hence q and z) then depends on how many canaries were included, as in any DP-SGD run that treats
its dataset size as public; the theorem assumes it does not, but the count is the same for every
canary and so cannot single one out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from scipy.stats import binom
from torch import nn

from dpbench.data import DatasetSplits

log = logging.getLogger("dpbench")

# Candidate numbers of guesses, as shares of the canaries (half "included", half "excluded"). They are
# fixed before any score is seen and each is tested at significance (1 - confidence) / len(GUESS_SHARES)
# (Bonferroni), so reporting the best of them keeps the stated confidence.
GUESS_SHARES = (0.02, 0.05, 0.1, 0.2, 0.5)
# The canary generator's seed is the run's seed plus this (the run uses seed + 1 for the noise and
# seed + 2 for the sampler).
SEED_OFFSET = 3


def _check_counts(correct: int, guesses: int, canaries: int, delta: float, confidence: float) -> None:
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError(
            f"need 0 <= correct <= guesses <= canaries, got correct={correct}, guesses={guesses}, canaries={canaries}"
        )
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}; 0.95 is usual")


def p_value(correct: int, guesses: int, canaries: int, epsilon: float, delta: float) -> float:
    """Upper bound on P[at least ``correct`` of ``guesses`` guesses are right] when the training run is
    (epsilon, delta)-DP and each of the ``canaries`` was included independently with probability 1/2.

    Theorem 3 of Steinke, Nasr & Jagielski (2023): with W ~ Binomial(r, e^eps / (1 + e^eps)),
    P[correct >= v] <= P[W >= v] + 2 m delta max_{1 <= i <= v} P[v > W >= v - i] / i.
    (For i > v the window P[v > W >= v - i] stops growing, so the maximum is reached at i <= v.)"""
    q = float(expit(epsilon))
    tail = float(binom.sf(correct - 1, guesses, q))
    if delta == 0 or correct == 0:
        return min(tail, 1.0)
    widths = np.arange(1, correct + 1)
    below = binom.cdf(correct - 1, guesses, q)
    windows = below - binom.cdf(correct - 1 - widths, guesses, q)
    return min(tail + 2 * canaries * delta * float(np.max(windows / widths)), 1.0)


def epsilon_lower_bound(correct: int, guesses: int, canaries: int, delta: float, confidence: float) -> float:
    """The largest epsilon such that "the run is (epsilon, delta)-DP" is rejected at significance
    1 - ``confidence`` by ``correct`` right guesses out of ``guesses`` among ``canaries`` canaries
    (0 if not even epsilon = 0 is rejected).

    Bisection on epsilon keeping p_value(low) <= 1 - confidence < p_value(high), as in the paper's
    code; the returned epsilon is always one whose p-value is at most 1 - confidence, and since
    (e, delta)-DP implies (e', delta)-DP for every e' >= e, every smaller epsilon is rejected too."""
    _check_counts(correct, guesses, canaries, delta, confidence)
    significance = 1 - confidence
    if guesses == 0 or p_value(correct, guesses, canaries, 0.0, delta) > significance:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(correct, guesses, canaries, high, delta) <= significance:
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        if p_value(correct, guesses, canaries, middle, delta) <= significance:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class AuditResult:
    """What the audit measured; ``violation`` is a lower bound above the verified epsilon."""

    epsilon_lower_bound: float
    confidence: float
    violation: bool
    verified_epsilon: float | None
    delta: float
    canaries: int
    included: int
    guesses: int
    correct: int
    candidates: tuple[dict, ...]
    method: str

    def to_dict(self) -> dict:
        return asdict(self) | {"candidates": [dict(c) for c in self.candidates]}


@dataclass(frozen=True)
class AuditCanaries:
    """The canaries of one audited run: inputs, labels and which ones the training set holds."""

    features: torch.Tensor
    labels: torch.Tensor
    included: torch.Tensor  # bool [m]
    delta: float
    confidence: float = 0.95

    @classmethod
    def draw(cls, data: DatasetSplits, canaries: int, seed: int, delta: float, confidence: float = 0.95) -> AuditCanaries:
        """``canaries`` Gaussian inputs shaped like ``data``'s, uniform labels and fair-coin membership,
        all from one generator seeded with ``seed``: the same seed gives the same canaries."""
        if canaries < 2:
            raise ValueError(f"audit.canaries must be at least 2, got {canaries}; 1000 is usual")
        if not 0 < confidence < 1:
            raise ValueError(f"audit.confidence must be in (0, 1), got {confidence}; 0.95 is usual")
        generator = torch.Generator().manual_seed(seed)
        features = torch.randn((canaries, *data.input_shape), generator=generator)
        labels = torch.randint(0, data.num_classes, (canaries,), generator=generator)
        included = torch.rand(canaries, generator=generator) < 0.5
        return cls(features, labels, included, delta, confidence)

    def augment(self, data: DatasetSplits) -> DatasetSplits:
        """``data`` (of its own class) with the included canaries appended to its training set; the
        test set is unchanged."""
        return replace(
            data,
            train_features=torch.cat([data.train_features, self.features[self.included]]),
            train_labels=torch.cat([data.train_labels, self.labels[self.included]]),
        )

    @torch.no_grad()
    def scores(self, model: nn.Module) -> torch.Tensor:
        """Minus each canary's loss under ``model`` (the model's own ``loss`` if it has one, as in
        training; cross-entropy otherwise): higher means more likely included."""
        loss = getattr(model, "loss", F.cross_entropy)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        features, labels = self.features.to(device), self.labels.to(device)
        losses = torch.stack([loss(model(features[i : i + 1]), labels[i : i + 1]) for i in range(len(labels))])
        model.train(was_training)
        return -losses.float().cpu()

    def report(self, model: nn.Module, verified_epsilon: float | None) -> dict:
        """Score the canaries, guess, and bound epsilon from below; ``verified_epsilon`` None means
        unbounded (nothing finite was verified), which no lower bound can exceed."""
        result = self.audit(self.scores(model), verified_epsilon)
        log.info(
            "audit: epsilon >= %.3f at confidence %g (%d of %d guesses right, %d canaries, %d included); verified "
            "epsilon %s: %s", result.epsilon_lower_bound, result.confidence, result.correct, result.guesses,
            result.canaries, result.included, "unbounded" if result.verified_epsilon is None else f"{result.verified_epsilon:.4f}",
            "VIOLATION (the run leaks more than it accounts for)" if result.violation else "consistent",
        )
        return result.to_dict()

    def audit(self, scores: torch.Tensor, verified_epsilon: float | None) -> AuditResult:
        """The lower bound from given scores: the best of the GUESS_SHARES candidates, each at
        significance (1 - confidence) / len(GUESS_SHARES)."""
        m = len(self.labels)
        order = torch.argsort(scores, descending=True, stable=True)
        per_candidate = 1 - (1 - self.confidence) / len(GUESS_SHARES)
        candidates = []
        for share in GUESS_SHARES:
            k = max(1, round(share * m / 2))
            correct = int(self.included[order[:k]].sum()) + int((~self.included[order[-k:]]).sum())
            bound = epsilon_lower_bound(correct, 2 * k, m, self.delta, per_candidate)
            candidates.append({"guesses": 2 * k, "correct": correct, "epsilon_lower_bound": bound})
        best = max(candidates, key=lambda c: c["epsilon_lower_bound"])
        verified = verified_epsilon if verified_epsilon is not None and math.isfinite(verified_epsilon) else None
        return AuditResult(
            epsilon_lower_bound=best["epsilon_lower_bound"],
            confidence=self.confidence,
            violation=verified is not None and best["epsilon_lower_bound"] > verified,
            verified_epsilon=verified,
            delta=self.delta,
            canaries=m,
            included=int(self.included.sum()),
            guesses=best["guesses"],
            correct=best["correct"],
            candidates=tuple(candidates),
            method=(
                "one-run audit (Steinke, Nasr & Jagielski 2023, Theorem 3): Gaussian-input canaries with random "
                "labels, each included with probability 1/2, scored by minus their loss; top/bottom-k guesses for "
                f"k in shares {GUESS_SHARES} of the canaries, Bonferroni-corrected"
            ),
        )


def prepare_audit(
    settings: Mapping[str, Any], data: DatasetSplits, seed: int, delta: float
) -> tuple[DatasetSplits, AuditCanaries | None]:
    """The training data and audit of a run from the ``audit`` config (``enabled``, ``canaries``,
    ``confidence``): ``data`` unchanged and None when the audit is off, else the data with the included
    canaries appended and the canaries to score after training."""
    if not settings.get("enabled", False):
        return data, None
    canaries = AuditCanaries.draw(
        data, int(settings["canaries"]), seed + SEED_OFFSET, delta, float(settings.get("confidence", 0.95))
    )
    return canaries.augment(data), canaries
