"""The privacy cost of hyper-parameter tuning: the best of a random number of private trials.

Choosing the best of K trained models on the private data leaks more than one training run.
Papernot & Steinke (ICLR 2022, "Hyperparameter tuning with Renyi differential privacy") bound the
cost when K is itself random and hidden: K drawn from a truncated negative binomial law with shape
eta (eta = 1: geometric, eta = 0: logarithmic) or a Poisson law (shape = infinity), each trial a
private mechanism (its training and the noised validation score it is chosen by), and only the
best trial's output released. dp_accounting implements that bound as ``RepeatAndSelectDpEvent``;
:func:`dpbench.privacy.accountant.tuning_epsilon` composes a trial's ledger into it.

This module is the law of K: its parameters, the event, and draws of K. The draw must stay secret
(the bound holds for a random, unpublished K), so a search draws it from OS entropy unless asked
for a reproducible seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting
import numpy as np
from dp_accounting import dp_event


@dataclass(frozen=True)
class TrialCount:
    """The law of the number of trials K: ``mean`` and ``shape`` (``math.inf``: Poisson, which may draw
    K = 0 and then releases nothing; else a truncated negative binomial on {1, 2, ...})."""

    mean: float
    shape: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and self.mean >= 1.0):
            raise ValueError(f"the mean number of trials must be a finite number >= 1, got {self.mean}")
        if math.isnan(self.shape) or self.shape < 0:
            raise ValueError(
                "the shape of the trial-count law must be >= 0 (0 logarithmic, 1 geometric, inf Poisson), "
                f"got {self.shape}"
            )

    @property
    def is_poisson(self) -> bool:
        return math.isinf(self.shape)

    @property
    def gamma(self) -> float:
        """The truncated negative binomial's parameter gamma whose mean is ``mean`` (bisection)."""
        if self.is_poisson:
            raise ValueError("a Poisson trial count has no gamma parameter")
        if self.shape == 1.0:
            return 1.0 / self.mean
        low, high = 0.0, 1.0
        for _ in range(200):
            middle = (low + high) / 2
            if middle > 0 and truncated_negative_binomial_mean(middle, self.shape) > self.mean:
                low = middle
            else:
                high = middle
        return high

    def event(self, trial: dp_accounting.DpEvent) -> dp_accounting.DpEvent:
        """The whole search as one dp_accounting event: ``trial`` repeated K times, the best released."""
        return dp_event.RepeatAndSelectDpEvent(trial, self.mean, self.shape)

    def sample(self, rng: np.random.Generator) -> int:
        """One draw of K."""
        if self.is_poisson:
            return int(rng.poisson(self.mean))
        gamma = self.gamma
        if self.shape == 0.0:
            return int(rng.logseries(1.0 - gamma)) if gamma < 1.0 else 1
        while True:  # a negative binomial conditioned on K >= 1
            draw = int(rng.negative_binomial(self.shape, gamma))
            if draw >= 1:
                return draw


def truncated_negative_binomial_mean(gamma: float, shape: float) -> float:
    """Mean of the truncated negative binomial law (Papernot & Steinke, Definition 1)."""
    if gamma >= 1.0:
        return 1.0
    if shape == 0.0:
        return (1.0 - gamma) / (gamma * math.log(1.0 / gamma))
    return shape * (1.0 - gamma) / (gamma * (1.0 - gamma**shape))
