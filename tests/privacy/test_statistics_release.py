"""The one-shot statistics release: bounded sensitivity whatever the input, the stated noise, the stated epsilon."""

import math

import pytest
import torch
from scipy import stats

from dpbench.privacy.accountant import check_accountants_agree, epsilon, epsilon_independent
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.statistics_release import StatisticsRelease, clip_rows, release_sum


def test_clipping_bounds_every_row_and_keeps_rows_within_the_bound():
    rows = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [-30.0, 40.0]])
    clipped = clip_rows(rows, 1.0)
    assert torch.linalg.vector_norm(clipped, dim=1).max() <= 1.0 + 1e-12
    assert torch.equal(clipped[1], rows[1]) and torch.equal(clipped[2], rows[2])
    assert torch.allclose(clipped[3], torch.tensor([-0.6, 0.8]))


def test_adding_one_example_moves_the_noiseless_sum_by_at_most_the_bound():
    release = StatisticsRelease("s", bound=2.0, noise_multiplier=1.0)
    rows = torch.randn(100, 5) * 10
    outlier = torch.full((1, 5), 1e6)
    seed = lambda: torch.Generator().manual_seed(0)  # noqa: E731  (same noise on both sides)
    with_outlier = release_sum([rows, outlier], release, seed())
    without = release_sum([rows], release, seed())
    assert torch.linalg.vector_norm(with_outlier - without) == pytest.approx(2.0)


def test_noise_has_the_stated_standard_deviation():
    release = StatisticsRelease("s", bound=3.0, noise_multiplier=2.0)
    rows = torch.ones(10, 4000)
    draws = release_sum([rows], release, torch.Generator().manual_seed(1)) - 10 * 3.0 / math.sqrt(4000)
    # chi-square test of the variance: 4000 coordinates with std 6
    statistic = float((draws**2).sum()) / 36.0
    assert stats.chi2(4000).cdf(statistic) == pytest.approx(0.5, abs=0.49)
    assert float(draws.std()) == pytest.approx(6.0, rel=0.05)


def test_chunks_are_summed_as_one_table():
    release = StatisticsRelease("s", bound=1.0, noise_multiplier=1.0)
    rows = torch.rand(50, 3)
    whole = release_sum([rows], release, torch.Generator().manual_seed(2))
    chunked = release_sum([rows[:7], rows[7:7], rows[7:]], release, torch.Generator().manual_seed(2))
    assert torch.allclose(whole, chunked)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_statistic_contributes_nothing(bad):
    """A red team's record of pixels 2e19 overflowed a float32 mean square and the release refused the run, so
    whether the run went on was a function of that record; now the release is as if it were absent."""
    release = StatisticsRelease("s", bound=1.0, noise_multiplier=1.0)
    rows = torch.rand(20, 3)
    poisoned = torch.cat([rows[:5], torch.tensor([[1.0, bad, 0.5]]), rows[5:]])
    with_it = release_sum([poisoned], release, torch.Generator().manual_seed(4))
    without = release_sum([rows], release, torch.Generator().manual_seed(4))
    torch.testing.assert_close(with_it, without, rtol=0, atol=1e-12)  # the sum's order of additions differs


def test_a_release_cannot_be_subclassed_or_carry_a_number_subclass():
    """A red team's release subclass answered noise_std = 1e-12 while its record said multiplier 8: the noise
    and the record now come from the same three plain values."""
    with pytest.raises(TypeError, match="cannot be subclassed"):
        class Quiet(StatisticsRelease):
            @property
            def noise_std(self) -> float:
                return 1e-12

    class Loud(float):
        def __mul__(self, other):
            return 1e-12

    release = StatisticsRelease("s", bound=Loud(2.0), noise_multiplier=Loud(3.0))
    assert type(release.bound) is float and type(release.noise_multiplier) is float
    assert release.noise_std == 6.0


def test_the_release_refuses_anything_but_a_statistics_release():
    class Duck:
        name, bound, noise_multiplier, noise_std = "s", 1.0, 1.0, 1e-12

    with pytest.raises(TypeError, match="needs a StatisticsRelease"):
        release_sum([torch.ones(2, 2)], Duck(), torch.Generator())


def test_a_release_without_noise_cannot_be_declared():
    with pytest.raises(ValueError, match="without noise"):
        StatisticsRelease("s", bound=1.0, noise_multiplier=0.0)


@pytest.mark.parametrize("z", [1.0, 4.0])
def test_ledger_record_is_accounted_as_the_gaussian_mechanism(z):
    """A full-data Gaussian release of multiplier z has RDP alpha / (2 z^2) at every order; converted to
    (epsilon, delta) by Balle et al. 2020 (Thm 21) and minimised over orders, it matches both accountants."""
    ledger = PrivacyLedger([StatisticsRelease("s", bound=5.0, noise_multiplier=z).record()])
    delta = 1e-5
    orders = [1 + x / 100 for x in range(1, 20000)]
    closed_form = min(a / (2 * z**2) + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
                      for a in orders)
    assert epsilon(ledger, delta) == pytest.approx(closed_form, rel=0.02)
    assert epsilon_independent(ledger, delta, "rdp") == pytest.approx(closed_form, rel=0.02)
    assert epsilon_independent(ledger, delta, "pld") <= epsilon(ledger, delta)
    check_accountants_agree(ledger, delta)


def test_a_release_changed_after_construction_is_read_as_plain_values():
    """A tenth red team swapped a float subclass (whose product is 1e-12) into a release with object.__setattr__,
    after construction: the release's noise and its ledger record are computed from plain values all the same."""
    class Quiet(float):
        def __mul__(self, other):
            return 1e-12

        __rmul__ = __mul__

    honest = StatisticsRelease("s", 1.0, 8.0)
    changed = StatisticsRelease("s", 1.0, 8.0)
    object.__setattr__(changed, "noise_multiplier", Quiet(8.0))
    rows = torch.zeros(10, 3)
    assert torch.equal(release_sum([rows], changed, torch.Generator().manual_seed(0)),
                       release_sum([rows], honest, torch.Generator().manual_seed(0)))
    record = changed.record()
    assert type(record.noise_multiplier) is float and record == honest.record()
