"""The one-run audit: its epsilon lower bound against independent computations (Clopper-Pearson for
pure DP, a direct transcription of Theorem 3, exact coverage of randomized response), its canaries,
and end to end: a plugin that lies about its noise is caught, a private run is not flagged."""

import itertools
import json
import math
from dataclasses import dataclass

import pytest
import torch
from scipy.special import comb, expit, logit
from scipy.stats import beta as beta_distribution
from scipy.stats import binom
from torch import nn

from dpbench.data import DatasetSplits, load_dataset
from dpbench.training.experiment import run_experiment
from dpbench.verification.audit import GUESS_SHARES, AuditCanaries, epsilon_lower_bound, p_value, prepare_audit


# ------------------------------------------------------------------------------------- the bound
@pytest.mark.parametrize("correct, guesses", [(10, 10), (45, 50), (80, 100), (150, 200)])
def test_pure_dp_bound_is_the_clopper_pearson_lower_limit(correct, guesses):
    """With delta = 0, Theorem 3 is a binomial tail: the bound is the logit of the one-sided
    Clopper-Pearson lower confidence limit of the guessing accuracy."""
    expected = logit(beta_distribution.ppf(0.05, correct, guesses - correct + 1))
    assert epsilon_lower_bound(correct, guesses, 1000, 0.0, 0.95) == pytest.approx(expected, rel=1e-6)


def theorem_3(correct: int, guesses: int, canaries: int, epsilon: float, delta: float) -> float:
    """Theorem 3 as printed, term by term, with the maximum over all i in 1..m."""
    q = expit(epsilon)
    pmf = [comb(guesses, w, exact=True) * q**w * (1 - q) ** (guesses - w) for w in range(guesses + 1)]
    tail = sum(pmf[correct:])
    window = max(sum(pmf[max(correct - i, 0) : correct]) / i for i in range(1, canaries + 1))
    return min(tail + 2 * canaries * delta * window, 1.0)


@pytest.mark.parametrize("correct, guesses, canaries, epsilon", [(30, 40, 100, 0.5), (40, 40, 60, 2.0), (55, 100, 200, 0.1)])
def test_p_value_matches_a_direct_transcription_of_theorem_3(correct, guesses, canaries, epsilon):
    assert p_value(correct, guesses, canaries, epsilon, 1e-3) == pytest.approx(
        theorem_3(correct, guesses, canaries, epsilon, 1e-3), rel=1e-9
    )


def test_bound_is_where_the_p_value_crosses_the_significance():
    bound = epsilon_lower_bound(90, 100, 1000, 1e-5, 0.95)
    assert p_value(90, 100, 1000, bound, 1e-5) <= 0.05 < p_value(90, 100, 1000, bound + 1e-6, 1e-5)


def test_bound_grows_with_the_number_correct_and_is_zero_at_chance():
    bounds = [epsilon_lower_bound(v, 100, 1000, 1e-5, 0.95) for v in range(101)]
    assert all(a <= b for a, b in itertools.pairwise(bounds))
    assert bounds[50] == bounds[55] == 0.0  # chance level, and a little above it, proves nothing
    assert bounds[100] > bounds[90] > 1.0


def test_bound_grows_with_more_canaries_at_the_same_accuracy():
    bounds = [epsilon_lower_bound(int(0.8 * m / 5), m // 5, m, 1e-5, 0.95) for m in (100, 1000, 10000)]
    assert 0 < bounds[0] < bounds[1] < bounds[2] < logit(0.8)


def test_delta_only_loosens_the_bound():
    """Each canary's delta slack adds up: more canaries for the same guesses, or a larger delta, never
    tighten the bound."""
    pure = epsilon_lower_bound(90, 100, 1000, 0.0, 0.95)
    assert epsilon_lower_bound(90, 100, 1000, 1e-5, 0.95) < pure
    assert epsilon_lower_bound(90, 100, 10000, 1e-5, 0.95) < epsilon_lower_bound(90, 100, 1000, 1e-5, 0.95)
    assert epsilon_lower_bound(90, 100, 1000, 1e-3, 0.95) < epsilon_lower_bound(90, 100, 1000, 1e-5, 0.95)


def test_higher_confidence_gives_a_lower_bound():
    assert epsilon_lower_bound(90, 100, 1000, 1e-5, 0.99) < epsilon_lower_bound(90, 100, 1000, 1e-5, 0.95)


@pytest.mark.parametrize("guesses, epsilon", [(100, 1.0), (40, 2.0), (200, 0.5)])
@pytest.mark.parametrize("delta", [0.0, 1e-5])
def test_exact_coverage_on_randomized_response(guesses, epsilon, delta):
    """Randomized response with accuracy e^eps / (1 + e^eps) per canary is exactly eps-DP: the chance
    that the bound exceeds eps (computed exactly over the binomial number correct) is at most 5%,
    and (for delta = 0) not far below, so the bound is valid and not vacuous."""
    bounds = [epsilon_lower_bound(v, guesses, 1000, delta, 0.95) for v in range(guesses + 1)]
    first_flagged = next(v for v, bound in enumerate(bounds) if bound > epsilon)
    false_alarm = binom.sf(first_flagged - 1, guesses, expit(epsilon))
    assert false_alarm <= 0.05
    if delta == 0:
        assert false_alarm > 0.025


@pytest.mark.parametrize(
    "args", [(11, 10, 100, 1e-5, 0.95), (5, 10, 8, 1e-5, 0.95), (-1, 10, 100, 1e-5, 0.95), (5, 10, 100, 1.0, 0.95), (5, 10, 100, 1e-5, 1.0)]
)
def test_impossible_inputs_are_refused(args):
    with pytest.raises(ValueError):
        epsilon_lower_bound(*args)


# ----------------------------------------------------------------------------------- the canaries
@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits")


def test_canaries_are_deterministic_by_seed_and_shaped_like_the_data(digits):
    first, again, other = (AuditCanaries.draw(digits, 500, seed, 1e-5) for seed in (7, 7, 8))
    assert torch.equal(first.features, again.features) and torch.equal(first.included, again.included)
    assert not torch.equal(first.included, other.included)
    assert first.features.shape == (500, *digits.input_shape) and first.labels.max() < digits.num_classes
    assert 200 < int(first.included.sum()) < 300


def test_augmented_data_holds_exactly_the_included_canaries(digits):
    canaries = AuditCanaries.draw(digits, 100, 0, 1e-5)
    augmented = canaries.augment(digits)
    n, included = digits.train_size, int(canaries.included.sum())
    assert augmented.train_size == n + included
    assert torch.equal(augmented.train_features[:n], digits.train_features)
    assert torch.equal(augmented.train_features[n:], canaries.features[canaries.included])
    assert torch.equal(augmented.train_labels[n:], canaries.labels[canaries.included])
    assert augmented.test_features is digits.test_features


def test_augmenting_keeps_the_dataset_class(digits):
    @dataclass(frozen=True)
    class WithExtra(DatasetSplits):
        extra: int = 0

    data = WithExtra(**{k: getattr(digits, k) for k in DatasetSplits.__dataclass_fields__}, extra=5)
    augmented = AuditCanaries.draw(data, 10, 0, 1e-5).augment(data)
    assert isinstance(augmented, WithExtra) and augmented.extra == 5


def test_audit_off_leaves_the_data_alone(digits):
    assert prepare_audit({"enabled": False, "canaries": 1000}, digits, 0, 1e-5) == (digits, None)
    data, audit = prepare_audit({"enabled": True, "canaries": 50, "confidence": 0.9}, digits, 0, 1e-5)
    assert data.train_size == digits.train_size + int(audit.included.sum()) and audit.confidence == 0.9


def test_guesses_follow_the_scores(digits):
    canaries = AuditCanaries.draw(digits, 1000, 0, 1e-5)
    perfect = canaries.audit(canaries.included.float(), verified_epsilon=1.0)
    assert perfect.correct == perfect.guesses == round(max(GUESS_SHARES) * 1000)
    assert perfect.epsilon_lower_bound > 3 and perfect.violation
    inverted = canaries.audit(-canaries.included.float(), verified_epsilon=1.0)
    assert inverted.epsilon_lower_bound == 0.0 and not inverted.violation
    assert not canaries.audit(canaries.included.float(), verified_epsilon=None).violation  # nothing finite to exceed


# ---------------------------------------------------------------------------------- end to end
class TinyMLP(nn.Module):
    """64 -> 64 -> 10 tanh perceptron on the 8x8 digits: trains in seconds, memorises canaries."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class NoiselessPlugin:
    """Clips to C and claims the calibrated multiplier, but adds no noise at all."""

    def __init__(self, max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs, target_epsilon, target_delta):
        self.max_grad_norm, self.noise_multiplier, self.expected_batch_size = max_grad_norm, noise_multiplier, batch_size

    def clip_and_noise(self, grads, step, epoch):
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        scale = torch.clamp(self.max_grad_norm / (norms + 1e-12), max=1.0)
        return [torch.einsum("b,b...->...", scale, g) / self.expected_batch_size for g in grads]

    def get_effective_sigma(self, step, epoch):
        return self.noise_multiplier


AUDITED_RUN = (
    f"model._target_={__name__}.TinyMLP", "~model.num_classes", "audit.enabled=true", "audit.canaries=400",
    "train.epochs=10", "train.lr=0.5", "privacy.target_epsilon=1",
)


def test_audit_catches_a_plugin_that_lies_about_its_noise(make_config, tmp_path):
    """Probing off, so the plugin's claim stands as its verified epsilon (about 1); the audit alone
    shows that the run is far from 1-DP."""
    cfg = make_config(*AUDITED_RUN, f"mechanism._target_={__name__}.NoiselessPlugin", "verify.probe_rate=0", "train.max_grad_norm=10")
    summary = run_experiment(cfg, tmp_path / "run")
    audit = json.loads((tmp_path / "run" / "summary.json").read_text())["audit"]
    assert audit == summary["audit"]
    assert summary["verdict"] == "UNVERIFIED" and summary["epsilon"] <= 1.0
    assert audit["violation"] and audit["epsilon_lower_bound"] > 1.5 and audit["confidence"] == 0.95
    assert audit["verified_epsilon"] == summary["epsilon"] and audit["canaries"] == 400


def test_audit_does_not_flag_a_private_run(make_config, tmp_path):
    summary = run_experiment(make_config(*AUDITED_RUN), tmp_path / "run")
    audit = summary["audit"]
    assert summary["verdict"] == "VERIFIED" and not audit["violation"]
    assert audit["epsilon_lower_bound"] <= summary["epsilon"] <= 1.0
    assert math.isfinite(audit["epsilon_lower_bound"])
