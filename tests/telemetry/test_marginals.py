"""The DP release of the wide table's one-way marginals, and sampling matched to them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dpbench.telemetry.marginals import (
    COMPOSITION_GIVEN,
    COMPOSITION_WEIGHT,
    HISTOGRAM_BINS,
    PRESENCE_GIVEN,
    VALUE_GIVEN,
    Marginals,
    grouped_means,
    grouped_shares,
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
    blocks = (len(WIDE_LAYOUT.categories) + len(WIDE_LAYOUT.bits) + len(WIDE_LAYOUT.gaussians) + len(PRESENCE_GIVEN)
              + len(VALUE_GIVEN))
    weights = [COMPOSITION_WEIGHT.get(name, 1.0) for name in WIDE_LAYOUT.compositions]
    assert bound == pytest.approx(math.sqrt(blocks + sum(w * w for w in weights)))
    # the worst case: a device in every table with every composition concentrated on one part and every value
    # at or above the top of the histograms' range
    worst = rows[:1].clone()
    for column, _ in WIDE_LAYOUT.bits.values():
        worst[0, column] = 1.0
    for column, _, _ in WIDE_LAYOUT.gaussians.values():
        worst[0, column] = 5.0
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
    persona = rows[:, WIDE_LAYOUT.categories["persona"][1]].argmax(1)
    for value in torch.bincount(persona[rows[:, browsing] == 1]).argsort(descending=True)[:3].tolist():
        members = on_browsing[persona[rows[:, browsing] == 1] == value]
        key = ("persona", "browsing.category_share")
        assert np.allclose(marginals.group_mixes(key, marginals.compositions[key[1]])[value],
                           members[:, category].mean(0).numpy(), atol=1e-6)
    cpu = rows[:, WIDE_LAYOUT.categories["cpu"][1]].argmax(1)
    _, states, power = WIDE_LAYOUT.compositions["power_states.state_share"]
    for value in torch.bincount(cpu[rows[:, power] == 1]).argsort(descending=True)[:3].tolist():
        members = rows[(cpu == value) & (rows[:, power] == 1)]
        key = ("cpu", "power_states.state_share")
        assert np.allclose(marginals.group_mixes(key, marginals.compositions[key[1]])[value],
                           members[:, states].mean(0).numpy(), atol=1e-6)
    ram = rows[:, WIDE_LAYOUT.categories["ram"][1]].argmax(1)
    used, memory, _ = WIDE_LAYOUT.gaussians["memory.percent_used"]
    for value in torch.bincount(ram[rows[:, memory] == 1]).argsort(descending=True)[:3].tolist():
        members = rows[(ram == value) & (rows[:, memory] == 1), used].clamp(0.0, 1.2)
        assert marginals.values_given["ram", "memory.percent_used"][value] == pytest.approx(float(members.mean()),
                                                                                           rel=1e-5)
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


def test_a_group_mix_is_the_prior_where_it_is_noise_and_its_own_where_it_is_signal():
    overall = np.array([0.7, 0.2, 0.1])
    grouped = np.array([[100.0, 800.0, 100.0],   # 1000 rows with their own mix: far above noise 3
                        [2.0, -4.0, 5.0]])        # a handful of rows: all noise
    mixes = grouped_shares(grouped, overall, noise_std=3.0)
    assert mixes[0] == pytest.approx([0.1, 0.8, 0.1], abs=0.01)
    assert mixes[1] == pytest.approx(overall, abs=0.1)
    assert np.allclose(mixes.sum(axis=1), 1.0) and (mixes >= 0).all()
    # with a prior per group (the model's own mix of each group), a noise-only group keeps its own prior
    priors = np.array([overall, [0.1, 0.1, 0.8]])
    mixes = grouped_shares(grouped, priors, noise_std=3.0)
    assert mixes[0] == pytest.approx([0.1, 0.8, 0.1], abs=0.01)
    assert mixes[1] == pytest.approx([0.1, 0.1, 0.8], abs=0.1)


def test_a_group_mean_is_its_own_where_it_is_signal_and_the_overall_mean_where_it_is_noise():
    present = np.array([1000.0, 1000.0, 3.0, 0.0])
    sums = np.array([300.0, 700.0, 2.9, 1.0])   # means 0.3, 0.7, about 1 (3 rows: noise), none
    means = grouped_means(sums, present, noise_std=10.0)
    assert means[:2] == pytest.approx([0.3, 0.7], abs=0.01)
    overall = 1003.9 / 2003.0   # every sum over every present row
    assert means[2] == pytest.approx(overall, abs=0.05) and means[3] == pytest.approx(overall)


def test_a_mix_per_group_splits_its_weight_with_the_overall_block_so_the_bound_is_unchanged():
    """The category mix is also released per persona and the power-state mix per CPU: the mix's weight w is split
    into w / sqrt 2 for the overall block and for the per-group block (one group's slot holds the shares), so
    the 2-way mixes cost no extra sensitivity."""
    assert COMPOSITION_GIVEN == {"browsing.category_share": "persona", "power_states.state_share": "cpu"}
    grouped = sum(len(WIDE_LAYOUT.categories[attribute][0]) * len(WIDE_LAYOUT.compositions[name][0])
                  for name, attribute in COMPOSITION_GIVEN.items())
    widths = statistic_vectors(torch.zeros(1, WIDE_LAYOUT.width)).shape[1]
    assert widths == sum(len(v) for v, _ in WIDE_LAYOUT.categories.values()) + len(WIDE_LAYOUT.bits) \
        + HISTOGRAM_BINS * len(WIDE_LAYOUT.gaussians) + grouped \
        + sum(len(p) for p, _, _ in WIDE_LAYOUT.compositions.values()) \
        + sum(len(WIDE_LAYOUT.categories[a][0]) for a, _ in (*PRESENCE_GIVEN, *VALUE_GIVEN))
    weights = [COMPOSITION_WEIGHT.get(name, 1.0) for name in WIDE_LAYOUT.compositions]
    ones = len(WIDE_LAYOUT.categories) + len(WIDE_LAYOUT.bits) + len(WIDE_LAYOUT.gaussians) + len(PRESENCE_GIVEN) \
        + len(VALUE_GIVEN)
    assert sensitivity() == pytest.approx(math.sqrt(ones + sum(w * w for w in weights)))


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


def _matched_sample(marginals: Marginals) -> torch.Tensor:
    """40,000 rows of an untrained small model matched to ``marginals``."""
    torch.manual_seed(0)
    model = HurdleVAE(hidden=(32, 16), latent=4)
    model.match_marginals(marginals, 20_000, torch.Generator().manual_seed(1))
    return model.sample(40_000, torch.Generator().manual_seed(2))


@pytest.mark.slow
def test_each_persona_samples_its_released_mix(rows):
    """Sampling follows the released mix of each persona, here made very unlike the overall one."""
    marginals = _exact(rows)
    key = ("persona", "browsing.category_share")
    sums = marginals.grouped_mix_sums[key].copy()
    mixes = sums / sums.sum(axis=1, keepdims=True).clip(min=1e-12)
    persona = rows[:, WIDE_LAYOUT.categories["persona"][1]].argmax(1)
    largest = int(torch.bincount(persona).argmax())
    mixes[largest] = np.eye(mixes.shape[1])[3] * 0.6 + mixes[largest] * 0.4
    sums[largest] = mixes[largest] * sums[largest].sum()
    sample = _matched_sample(dataclasses.replace(marginals, grouped_mix_sums={**marginals.grouped_mix_sums, key: sums}))
    browsing = sample[:, WIDE_LAYOUT.bits["browsing.present"][0]] == 1
    drawn = sample[:, WIDE_LAYOUT.categories["persona"][1]].argmax(1)
    category = WIDE_LAYOUT.compositions["browsing.category_share"][1]
    for value in (largest, int(torch.bincount(drawn[browsing]).argsort(descending=True)[1])):
        share = sample[browsing & (drawn == value)][:, category].mean(0).numpy()
        assert 0.5 * np.abs(share - mixes[value]).sum() < 0.03, value


@pytest.mark.slow
def test_each_ram_size_samples_its_released_mean_utilisation(rows):
    """The mean of a value per attribute value follows the release, here moved far from the data's for the largest
    RAM size, while another keeps its own."""
    marginals = _exact(rows)
    key = ("ram", "memory.percent_used")
    means = marginals.values_given[key].copy()
    ram = rows[:, WIDE_LAYOUT.categories["ram"][1]].argmax(1)
    column, gate, _ = WIDE_LAYOUT.gaussians["memory.percent_used"]
    largest, second = torch.bincount(ram[rows[:, gate] == 1]).argsort(descending=True)[:2].tolist()
    means[largest] = means[largest] + 0.15
    sample = _matched_sample(dataclasses.replace(marginals, values_given={**marginals.values_given, key: means}))
    drawn = sample[:, WIDE_LAYOUT.categories["ram"][1]].argmax(1)
    present = sample[:, gate] == 1
    for value in (largest, second):
        synthetic = float(sample[present & (drawn == value), column].clamp(0.0, 1.2).mean())
        assert synthetic == pytest.approx(means[value], abs=0.02), value
