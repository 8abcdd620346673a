"""The DP release of the wide table's one-way marginals, and sampling matched to them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpbench.telemetry.marginals import (
    COMPOSITION_WEIGHT,
    HISTOGRAM_BINS,
    PRESENCE_GIVEN,
    Marginals,
    load_released,
    marginals_from_sum,
    marginals_release,
    release_marginals,
    save_released,
    sensitivity,
    statistic_vectors,
)
from dpbench.telemetry.vae import HurdleVAE
from dpbench.telemetry.wide_table import WIDE_LAYOUT, build_wide_table, decode_columns


@pytest.fixture(scope="module")
def rows(small_corpus) -> torch.Tensor:
    return torch.from_numpy(build_wide_table(small_corpus[0]).features)


def _exact(rows: torch.Tensor) -> Marginals:
    return marginals_from_sum(statistic_vectors(rows).double().sum(0).numpy(), len(rows), noise_std=1e-9)


def test_no_real_row_exceeds_the_bound_so_none_is_clipped(rows):
    vectors = statistic_vectors(rows)
    bound = marginals_release(1.0).bound
    assert bound == sensitivity()
    assert torch.linalg.vector_norm(vectors, dim=1).max() <= bound
    blocks = len(WIDE_LAYOUT.categories) + len(WIDE_LAYOUT.bits) + len(WIDE_LAYOUT.gaussians) + len(PRESENCE_GIVEN)
    weights = [COMPOSITION_WEIGHT.get(name, 1.0) for name in WIDE_LAYOUT.compositions]
    assert bound == pytest.approx(math.sqrt(blocks + sum(w * w for w in weights)))
    # the worst case: a device in every table with every composition concentrated on one part
    worst = rows[:1].clone()
    for column, _ in WIDE_LAYOUT.bits.values():
        worst[0, column] = 1.0
    for _, columns, _ in WIDE_LAYOUT.compositions.values():
        worst[0, columns] = 0.0
        worst[0, columns.start] = 1.0
    assert float(torch.linalg.vector_norm(statistic_vectors(worst))) == pytest.approx(bound, rel=1e-6)


def test_noiseless_marginals_are_the_rows_own(rows):
    marginals = _exact(rows)
    n = len(rows)
    chassis = WIDE_LAYOUT.categories["chassis"][1]
    assert np.allclose(marginals.categories["chassis"], rows[:, chassis].mean(0).numpy(), atol=1e-6)
    browsing = WIDE_LAYOUT.bits["browsing.present"][0]
    edge = WIDE_LAYOUT.bits["browser.edge"][0]
    names = list(WIDE_LAYOUT.bits)
    assert marginals.bit_rates[names.index("browsing.present")] == pytest.approx(float(rows[:, browsing].mean()))
    on_browsing = rows[rows[:, browsing] == 1]
    assert marginals.bit_rates[names.index("browser.edge")] == pytest.approx(float(on_browsing[:, edge].mean()))
    category = WIDE_LAYOUT.compositions["browsing.category_share"][1]
    assert np.allclose(marginals.compositions["browsing.category_share"], on_browsing[:, category].mean(0).numpy(),
                       atol=1e-6)
    column, gate, _ = WIDE_LAYOUT.gaussians["battery.duration_mins"]
    values = rows[rows[:, gate] == 1, column].numpy()
    quantiles = marginals.quantiles("battery.duration_mins", np.array([0.1, 0.5, 0.9]))
    assert np.allclose(quantiles, np.quantile(values, [0.1, 0.5, 0.9]), atol=1.2 / HISTOGRAM_BINS)
    countries = rows[:, WIDE_LAYOUT.categories["country"][1]].argmax(1)
    battery = rows[:, WIDE_LAYOUT.bits["battery.present"][0]]
    for value in torch.bincount(countries).argsort(descending=True)[:3].tolist():  # the three largest countries
        expected = float(battery[countries == value].mean())
        assert marginals.presence_given["country", "battery"][value] == pytest.approx(expected, rel=1e-6)
    assert n > 0


def test_noise_has_the_release_std_and_empty_bins_stay_empty(rows):
    release = marginals_release(2.0)
    noisy = release_marginals(rows, release, torch.Generator().manual_seed(0))
    exact = statistic_vectors(rows).double().sum(0).numpy()
    assert np.std(noisy - exact) == pytest.approx(release.noise_std, rel=0.05)
    marginals = marginals_from_sum(noisy, len(rows), release.noise_std)
    for name, masses in marginals.histograms.items():
        if masses is not None:
            assert masses.sum() == pytest.approx(1.0) and (masses >= 0).all(), name
    # a family with a few dozen devices has no histogram bin above three noise deviations
    assert marginals.histograms["psys.value"] is None


def test_noisy_two_way_rates_add_up_to_the_one_way_count_and_small_groups_take_the_overall_rate(rows):
    release = marginals_release(2.0)
    marginals = marginals_from_sum(release_marginals(rows, release, torch.Generator().manual_seed(3)), len(rows),
                                   release.noise_std)
    overall = marginals.bit_rates[list(WIDE_LAYOUT.bits).index("battery.present")]
    for attribute in ("country", "cpu"):
        rates = marginals.presence_given[attribute, "battery"]
        group = marginals.categories[attribute] * len(rows)
        assert float(group @ rates) == pytest.approx(overall * len(rows), rel=1e-9)
        # a group expected to hold under one battery device is all noise: it gets the overall rate (rescaled)
        tiny = group * overall < 1.0
        assert tiny.sum() >= 3, attribute
        assert np.allclose(rates[tiny], rates[tiny].mean(), rtol=0.3)
        assert rates[tiny].mean() == pytest.approx(overall, rel=0.5)


def test_a_release_round_trips_through_the_run_directory(rows, tmp_path):
    release = marginals_release(3.0)
    noisy = release_marginals(rows, release, torch.Generator().manual_seed(1))
    save_released(tmp_path / "m.npz", noisy, len(rows), release)
    again = load_released(tmp_path / "m.npz")
    expected = marginals_from_sum(noisy, len(rows), release.noise_std)
    assert np.array_equal(again.bit_rates, expected.bit_rates)
    assert all(np.array_equal(again.categories[k], v) for k, v in expected.categories.items())


@pytest.mark.slow
def test_calibrated_samples_have_the_released_marginals(rows):
    """An untrained model's samples, once calibrated, have the corpus's shares, rates, compositions and
    value distributions (here the noiseless marginals, so the only error is sampling)."""
    torch.manual_seed(0)
    model = HurdleVAE(hidden=(32, 16), latent=4)
    marginals = _exact(rows)
    model.match_marginals(marginals, 20_000, torch.Generator().manual_seed(1))
    sample = model.sample(60_000, torch.Generator().manual_seed(2))
    decoded = decode_columns(sample.numpy())
    country = np.bincount(decoded.categories["country"], minlength=len(marginals.categories["country"])) / 60_000
    assert 0.5 * np.abs(country - marginals.categories["country"]).sum() < 0.03
    names = list(WIDE_LAYOUT.bits)
    for family in ("memory", "browsing", "battery"):
        assert decoded.present[family].mean() == pytest.approx(marginals.bit_rates[names.index(f"{family}.present")],
                                                               rel=0.1), family
    browsing = sample[:, WIDE_LAYOUT.bits["browsing.present"][0]] == 1
    category = WIDE_LAYOUT.compositions["browsing.category_share"][1]
    share = sample[browsing][:, category].mean(0).numpy()
    assert 0.5 * np.abs(share - marginals.compositions["browsing.category_share"]).sum() < 0.05
    # 2-way: battery presence per CPU, which an untrained model knows nothing of
    cpu = sample[:, WIDE_LAYOUT.categories["cpu"][1]].argmax(1)
    battery = sample[:, WIDE_LAYOUT.bits["battery.present"][0]]
    target = marginals.presence_given["cpu", "battery"]
    for value in torch.bincount(cpu).argsort(descending=True)[:4].tolist():
        assert float(battery[cpu == value].mean()) == pytest.approx(target[value], abs=0.02), value
    assert target.max() > 3 * target[target > 0].min()  # the rates do differ between CPUs
    column, gate, _ = WIDE_LAYOUT.gaussians["battery.duration_mins"]
    synthetic = sample[sample[:, gate] == 1, column].numpy()
    real = rows[rows[:, gate] == 1, column].numpy()
    assert np.quantile(synthetic, [0.1, 0.5, 0.9]) == pytest.approx(np.quantile(real, [0.1, 0.5, 0.9]), abs=0.03)
    assert synthetic.std() == pytest.approx(real.std(), rel=0.3)
