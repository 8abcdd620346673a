"""Poisson sampling: batch sizes are Binomial(N, q) and every example is included at rate q."""

import numpy as np
import torch
from scipy import stats

from dpbench.privacy.sampler import PoissonSampler

N, Q, DRAWS = 2000, 0.05, 4000


def draw_batches(seed: int = 0) -> list[torch.Tensor]:
    sampler = PoissonSampler(N, Q, seed=seed)
    return [sampler.sample() for _ in range(DRAWS)]


def test_batch_sizes_follow_binomial():
    sizes = np.array([len(b) for b in draw_batches()])
    assert abs(sizes.mean() - N * Q) < 4 * np.sqrt(N * Q * (1 - Q) / DRAWS)
    # Variance of Binomial(N, q): a fixed-size sampler would show ~0.
    assert 0.85 * N * Q * (1 - Q) < sizes.var() < 1.15 * N * Q * (1 - Q)


def test_every_example_is_included_at_rate_q():
    counts = torch.zeros(N)
    for batch in draw_batches(seed=1):
        counts[batch] += 1
    expected = DRAWS * Q
    chi2 = float(((counts - expected) ** 2 / (expected * (1 - Q))).sum())
    # Sum of N squared standardised binomials ~ chi2 with N degrees of freedom.
    assert stats.chi2(N).sf(chi2) > 1e-4
    assert stats.chi2(N).cdf(chi2) > 1e-4  # not suspiciously uniform either


def test_empty_batches_are_possible_and_indices_unique():
    sampler = PoissonSampler(10, 0.01, seed=0)
    batches = [sampler.sample() for _ in range(200)]
    assert any(len(b) == 0 for b in batches)
    assert all(len(torch.unique(b)) == len(b) for b in batches)


def test_state_round_trip_replays_the_same_batches():
    sampler = PoissonSampler(N, Q, seed=3)
    sampler.sample()
    state = sampler.state_dict()
    first = [sampler.sample() for _ in range(5)]
    sampler.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(first, [sampler.sample() for _ in range(5)]))


def test_inclusions_are_independent_between_examples():
    """Neighbouring and distant examples are included together at rate q^2 (gap sampling would show
    a dependence between consecutive indices if its gaps were drawn wrong)."""
    inclusion = torch.zeros(DRAWS, N, dtype=torch.bool)
    for row, batch in enumerate(draw_batches(seed=2)):
        inclusion[row, batch] = True
    standard_error = np.sqrt(Q**2 * (1 - Q**2) / (DRAWS * (N - 1)))
    for offset in (1, 2, 7, 1000):
        together = float((inclusion[:, :-offset] & inclusion[:, offset:]).float().mean())
        assert abs(together - Q**2) < 5 * standard_error, (offset, together)


def test_first_and_last_examples_are_reachable():
    counts = torch.zeros(N)
    for batch in draw_batches(seed=4):
        counts[batch] += 1
    for index in (0, N - 1):
        assert abs(float(counts[index]) - DRAWS * Q) < 5 * np.sqrt(DRAWS * Q * (1 - Q))


def test_rate_one_includes_everyone_and_tiny_rates_work():
    assert torch.equal(PoissonSampler(7, 1.0, seed=0).sample(), torch.arange(7))
    sampler = PoissonSampler(10_000_000, 1e-7, seed=0)
    sizes = [len(sampler.sample()) for _ in range(2000)]
    assert 0.8 < np.mean(sizes) < 1.2 and max(sizes) < 10
