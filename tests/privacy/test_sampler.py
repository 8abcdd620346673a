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
