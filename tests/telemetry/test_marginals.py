"""The DP release of the wide table's one-way marginals, and sampling matched to them."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from dpbench.telemetry import marginals as marginals_module
from dpbench.telemetry import vae
from dpbench.telemetry.marginals import (
    COMPOSITION_GIVEN,
    COMPOSITION_GIVEN_WEIGHT,
    COMPOSITION_WEIGHT,
    DAYS_STAND_IN,
    HISTOGRAM_BINS,
    HISTOGRAM_UPPER,
    HISTOGRAM_WEIGHT,
    JOINT_PRESENCE,
    JOINT_PRESENCE_WEIGHT,
    PRESENCE_GIVEN,
    REMAINDER_SPREADS,
    SPREAD_EVIDENCE_ERROR,
    VALUE_CENTRE,
    VALUE_GIVEN,
    VALUE_GIVEN_WEIGHT,
    Marginals,
    _support,
    between_group_spread,
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


def _exact_small() -> Marginals:
    """Noiseless marginals of 10 rows holding only category values: for tests that replace the fields they use."""
    rows = torch.zeros(10, WIDE_LAYOUT.width)
    for _, columns in WIDE_LAYOUT.categories.values():
        rows[:, columns.start] = 1.0
    return _exact(rows)


def _exact(rows: torch.Tensor) -> Marginals:
    return marginals_from_sum(statistic_vectors(rows).double().sum(0).numpy(), len(rows), noise_std=1e-9)


def test_no_real_row_exceeds_the_bound_so_none_is_clipped(rows):
    vectors = statistic_vectors(rows)
    bound = marginals_release(1.0).bound
    assert bound == sensitivity()
    assert torch.linalg.vector_norm(vectors, dim=1).max() <= bound
    weights = [1.0] * (len(WIDE_LAYOUT.categories) + len(WIDE_LAYOUT.bits) + len(PRESENCE_GIVEN))
    weights += [VALUE_GIVEN_WEIGHT.get(pair, 1.0) for pair in VALUE_GIVEN]
    weights += [HISTOGRAM_WEIGHT.get(name, 1.0) for name in WIDE_LAYOUT.gaussians]
    weights += [COMPOSITION_WEIGHT.get(name, 1.0) for name in WIDE_LAYOUT.compositions]
    weights.append(JOINT_PRESENCE_WEIGHT)
    weights += [COMPOSITION_GIVEN_WEIGHT[pair] for pair in COMPOSITION_GIVEN]
    assert bound == pytest.approx(math.sqrt(sum(w * w for w in weights)))
    # the worst case: a device in every table, every value at the top of the scale (or beyond: clipped),
    # every composition concentrated on one part
    worst = rows[:1].clone()
    for column, _ in WIDE_LAYOUT.bits.values():
        worst[0, column] = 1.0
    for column, _, _ in WIDE_LAYOUT.gaussians.values():
        worst[0, column] = 5.0
    for _, columns, _ in WIDE_LAYOUT.compositions.values():
        worst[0, columns] = 0.0
        worst[0, columns.start] = 1.0
    assert float(torch.linalg.vector_norm(statistic_vectors(worst))) == pytest.approx(bound, rel=1e-6)
    # and below the scale: a group sum's centred deviation is clipped at -1, never beyond
    for column, _, _ in WIDE_LAYOUT.gaussians.values():
        worst[0, column] = -5.0
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
    ram = rows[:, WIDE_LAYOUT.categories["ram"][1]].argmax(1)
    used, memory, _ = WIDE_LAYOUT.gaussians["memory.percent_used"]
    key = ("ram", "memory.percent_used")
    released = VALUE_CENTRE + marginals.value_sums[key] / np.maximum(marginals.value_present[key], 1e-12)
    for value in torch.bincount(ram[rows[:, memory] == 1]).argsort(descending=True)[:3].tolist():
        members = rows[(ram == value) & (rows[:, memory] == 1), used].clamp(0.0, 1.2)
        assert marginals.value_present[key][value] == pytest.approx(len(members))
        assert released[value] == pytest.approx(float(members.mean()), rel=1e-5)
    persona = rows[:, WIDE_LAYOUT.categories["persona"][1]].argmax(1)
    mixes = marginals.compositions_given["persona", "browsing.category_share"]
    for value in torch.bincount(persona[rows[:, browsing] == 1]).argsort(descending=True)[:3].tolist():
        members = rows[(persona == value) & (rows[:, browsing] == 1)][:, category]
        assert np.allclose(mixes[value], members.mean(0).numpy(), atol=1e-6), value
    present = np.stack([rows[:, WIDE_LAYOUT.bits[f"{family}.present"][0]].numpy() for family in JOINT_PRESENCE], 1)
    for pattern in range(2 ** len(JOINT_PRESENCE)):
        holds = [(pattern >> i) & 1 for i in range(len(JOINT_PRESENCE))]
        share = (present == holds).all(axis=1).mean()
        assert marginals.joint_presence[pattern] == pytest.approx(share, abs=1e-9), pattern
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
    # a family with a few dozen devices has no histogram bin above three noise deviations; its day counts
    # then take the C0 table's or, lost too at this size, the mean of the released day-count histograms
    # (not the untrained model's: ChassisAgg's join multiplies them)
    assert marginals.histograms["psys.value"] is None
    days = {name: masses for name, masses in marginals.histograms.items() if name.endswith(".days")}
    assert all(masses is not None for masses in days.values()) and DAYS_STAND_IN == "c0.days"
    own = [masses for masses in days.values() if not np.allclose(masses, days[DAYS_STAND_IN])]
    stand_ins = [name for name, masses in days.items() if np.allclose(masses, days[DAYS_STAND_IN])]
    assert len(own) >= 3 and {f"{family}.days" for family in JOINT_PRESENCE} <= set(stand_ins)
    assert np.allclose(days[DAYS_STAND_IN], np.mean(own, axis=0))


def test_a_histogram_keeps_its_significant_bins_and_the_tails_next_to_them_but_not_isolated_noise():
    noise = 10.0
    # core (>= 3 sd): bins 4-6; left tail 3, 2, 1 (>= 1 sd, each next to a kept bin); right tail 7, then
    # 8 (< 1 sd) stops it, so 9 is not reached; 12 (2.5 sd) stands alone
    bins = np.array([0, 25, 15, 12, 80, 200, 90, 11, 8, 12, 0, -5, 25, 0, 0, 0], dtype=float)
    kept = _support(bins, noise)
    assert np.flatnonzero(kept).tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert not _support(np.full(8, 25.0), noise).any()  # nothing above the threshold: nothing to grow from


def test_a_value_lost_bin_by_bin_is_found_at_a_coarser_resolution_and_pure_noise_is_not():
    """120 devices spread over bins 16-23 (15 per bin) under a noise of 12.6 per bin: in most draws no bin of its
    own stands 3 deviations above the noise, and in most of those a sum of 4 or 8 does; the coarse histogram's
    mean is then the devices'. A histogram of noise alone stays empty in nearly every draw."""
    noise = 12.6
    rng = np.random.default_rng(0)
    truth = np.zeros(HISTOGRAM_BINS)
    truth[16:24] = 15.0
    centres = (np.arange(HISTOGRAM_BINS) + 0.5) * HISTOGRAM_UPPER / HISTOGRAM_BINS
    true_mean = float(centres @ truth / truth.sum())
    lost, means, found_in_noise = 0, [], 0
    for _ in range(200):
        noisy = truth + rng.normal(0.0, noise, HISTOGRAM_BINS)
        found_in_noise += marginals_module._coarse_bins(rng.normal(0.0, noise, HISTOGRAM_BINS), noise).sum() > 0
        if marginals_module._support(noisy, noise).any():
            continue  # a bin of its own stood out: the coarse histogram is not used
        lost += 1
        coarse = marginals_module._coarse_bins(noisy, noise)
        if coarse.sum() > 0:
            means.append(float(centres @ coarse / coarse.sum()))
    assert lost >= 100  # bin by bin, the value is lost in most draws
    assert len(means) >= 0.5 * lost  # and found at a coarser resolution in most of those (58%: 3 deviations)
    assert abs(np.median(means) - true_mean) < 0.05  # within two of its bins' width
    assert found_in_noise <= 10


def test_a_sparse_value_without_a_histogram_of_its_own_gets_the_coarse_one(rows):
    """End to end: a value whose 120 devices lie 15 to a bin in bins 16-23 under a noise of 12.6 per bin (each bin
    1.2 deviations: lost bin by bin, as the package sensors' values are at 200,000 devices) gets the histogram
    of its eight bins summed (3.4 deviations), spread evenly over them; it would otherwise be left to the
    untrained model. A day count lost the same way keeps its stand-in."""
    noise_std = 12.6
    sums = statistic_vectors(rows).double().sum(0).numpy()
    blocks = marginals_module._blocks(WIDE_LAYOUT)
    keys = [block.key for block in blocks]
    for name in ("freq.value", "freq.days"):
        start = sum(block.width for block in blocks[:keys.index((name,))])
        weight = HISTOGRAM_WEIGHT.get(name, 1.0)
        sums[start:start + HISTOGRAM_BINS] = 0.0
        sums[start + 16:start + 24] = 15.0 * weight  # the block's entries carry its weight
    marginals = marginals_from_sum(sums, len(rows), noise_std * HISTOGRAM_WEIGHT.get("freq.value", 1.0))
    expected = np.zeros(HISTOGRAM_BINS)
    expected[16:24] = 1.0 / 8
    assert np.allclose(marginals.histograms["freq.value"], expected)
    assert np.allclose(marginals.histograms["freq.days"], marginals.histograms[DAYS_STAND_IN])


def test_every_group_value_sum_and_mix_has_its_tables_group_counts_released():
    for attribute, name in VALUE_GIVEN + COMPOSITION_GIVEN:
        assert (attribute, name.split(".")[0]) in PRESENCE_GIVEN, (attribute, name)


def test_the_groups_spread_is_what_their_means_vary_by_beyond_the_noise():
    rng = np.random.default_rng(0)
    errors = rng.uniform(0.02, 0.3, size=400)
    for spread in (0.0, 0.05, 0.2):
        deviations = rng.normal(0.0, spread, 400) + rng.normal(0.0, errors)
        assert between_group_spread(deviations, errors) == pytest.approx(max(spread, 0.01), abs=0.02), spread


def test_a_group_mean_is_its_own_where_it_is_signal_and_the_models_where_it_is_noise():
    present = np.array([1000.0, 1000.0, 3.0, 10.0, 0.0])
    deviations = np.array([0.3, 0.1, 0.97, 0.5, 1.0]) - VALUE_CENTRE
    marginals = replace(_exact_small(), value_sums={("chassis", "c0.value"): deviations * present},
                        value_present={("chassis", "c0.value"): present},
                        value_noise={("chassis", "c0.value"): (10.0, 10.0)})
    prior = np.array([0.2, 0.2, 0.2, 0.3, 0.7])  # the model's total is the groups' (+0.1 and -0.1 cancel)
    means = marginals.group_means(("chassis", "c0.value"), prior)
    # two large groups far from their priors: the groups do differ, and these two are signal
    assert means[:2] == pytest.approx([0.3, 0.1], abs=0.01)
    assert means[2] == pytest.approx(0.2, abs=0.05)  # 3 rows, released mean 0.97: noise, the prior stands
    assert means[4] == pytest.approx(0.7, abs=0.05)  # no rows: the prior


def test_groups_that_are_noise_take_back_what_a_large_group_moves_so_the_total_stays_the_models():
    """One group with half the rows, its mean 0.1 above the population's, and 40 small noisy groups 0.1 below:
    shrinking the small groups towards the population's mean would leave each of them 0.08 too high and
    the groups' total 0.04 per row above the model's (whose overall mean is the released histogram's)."""
    rng = np.random.default_rng(2)
    present = np.concatenate([[4000.0], np.full(40, 100.0)])
    truth = np.concatenate([[0.78], np.full(40, 0.58)])
    noise = 15.0
    key = ("country", "battery.duration_mins")
    sums = (truth - VALUE_CENTRE) * present + rng.normal(0.0, noise, len(present))
    marginals = replace(_exact_small(), value_sums={key: sums}, value_present={key: present},
                        value_noise={key: (noise, 0.0)})
    prior = np.full(len(present), 0.68)
    means = marginals.group_means(key, prior)
    assert present @ means == pytest.approx(present @ prior, rel=1e-9)
    assert means[0] == pytest.approx(0.78, abs=0.01)
    assert means[1:].mean() == pytest.approx(0.58, abs=0.015)


def test_what_the_noisy_groups_take_back_is_bounded_by_two_group_spreads():
    """A prior whose total is far from the released groups' (0.3 per row for 2000 rows, with 20 rows of noisy
    groups to take it back) would need a shift of 30 scaled units: the noisy groups move at most two group
    spreads, and the large groups keep their released means."""
    present = np.concatenate([[1000.0, 1000.0], np.full(10, 2.0)])
    released = np.concatenate([[0.3, 0.5], np.full(10, 0.6)])
    key = ("ram", "memory.percent_used")
    marginals = replace(_exact_small(), value_sums={key: (released - VALUE_CENTRE) * present},
                        value_present={key: present}, value_noise={key: (10.0, 10.0)})
    prior = np.concatenate([[0.6, 0.8], np.full(10, 0.6)])
    means = marginals.group_means(key, prior)
    error = np.hypot(10.0, np.abs(released - VALUE_CENTRE) * 10.0) / present
    informative = error <= SPREAD_EVIDENCE_ERROR
    spread = between_group_spread(released[informative] - prior[informative], error[informative])
    assert means[:2] == pytest.approx([0.3, 0.5], abs=0.01)
    small = means[2:] - prior[2:]
    assert np.all(small > 0.0) and np.all(small <= REMAINDER_SPREADS * spread + 1e-12)
    assert present @ means < present @ prior  # the total is left off, not kept by moving the noisy groups further
    assert np.all((means >= 0.0) & (means <= HISTOGRAM_UPPER))


def test_many_tiny_groups_do_not_hide_how_much_the_large_ones_differ():
    """Tiny groups' released means are clipped to the scale, so they look less noisy than they are: left in
    the spread's estimate, 30 of them would shrink two large groups 0.15 and 0.3 from their priors back to
    the priors."""
    rng = np.random.default_rng(1)
    present = np.concatenate([[900.0, 900.0, 8000.0], rng.uniform(1.0, 3.0, 30)])
    means = np.concatenate([[0.45, 0.30, 0.60], rng.uniform(0.0, 1.2, 30)])
    key = ("ram", "memory.percent_used")
    marginals = replace(_exact_small(), value_sums={key: (means - VALUE_CENTRE) * present},
                        value_present={key: present}, value_noise={key: (34.0, 34.0)})
    shrunk = marginals.group_means(key, np.full(len(present), present @ means / present.sum()))
    assert shrunk[:3] == pytest.approx([0.45, 0.30, 0.60], abs=0.02)


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


def _matched_sample(marginals: Marginals, monkeypatch: pytest.MonkeyPatch, n: int = 20_000) -> torch.Tensor:
    """``n`` rows of an untrained small model matched to ``marginals`` (on fewer draws than a run uses)."""
    monkeypatch.setattr(vae, "VALUE_MATCHING_ROWS", 8_192)
    torch.manual_seed(0)
    model = HurdleVAE(hidden=(32, 16), latent=4)
    model.match_marginals(marginals, 8_192, torch.Generator().manual_seed(1))
    return model.sample(n, torch.Generator().manual_seed(2))


def test_each_ram_size_samples_its_released_mean_utilisation(rows, monkeypatch):
    """The mean of a value per attribute value follows the release, here moved far from the data's for the
    largest RAM size (a group of thousands: signal), while another keeps its own."""
    marginals = _exact(rows)
    key = ("ram", "memory.percent_used")
    sums = marginals.value_sums[key].copy()
    present = marginals.value_present[key]
    ram = rows[:, WIDE_LAYOUT.categories["ram"][1]].argmax(1)
    column, gate, _ = WIDE_LAYOUT.gaussians["memory.percent_used"]
    largest, second = torch.bincount(ram[rows[:, gate] == 1]).argsort(descending=True)[:2].tolist()
    sums[largest] += 0.15 * present[largest]
    sample = _matched_sample(replace(marginals, value_sums={**marginals.value_sums, key: sums}), monkeypatch)
    drawn = sample[:, WIDE_LAYOUT.categories["ram"][1]].argmax(1)
    sampled = sample[:, gate] == 1
    for value in (largest, second):
        synthetic = float(sample[sampled & (drawn == value), column].clamp(0.0, 1.2).mean())
        assert synthetic == pytest.approx(VALUE_CENTRE + sums[value] / present[value], abs=0.03), value


def test_each_persona_samples_its_released_browsing_mix(rows, monkeypatch):
    """A group's category mix follows the release, here moved far from the data's for the largest persona
    (a third of its time on one rare category), while another persona keeps its own."""
    marginals = _exact(rows)
    key = ("persona", "browsing.category_share")
    mixes = marginals.compositions_given[key].copy()
    persona_columns = WIDE_LAYOUT.categories["persona"][1]
    _, category, browsing = WIDE_LAYOUT.compositions["browsing.category_share"]
    on_browsing = rows[:, browsing] == 1
    largest, second = torch.bincount(rows[on_browsing][:, persona_columns].argmax(1)).argsort(descending=True)[:2]
    rare = int(np.argmin(mixes[largest]))
    mixes[largest] *= 2.0 / 3.0
    mixes[largest, rare] += 1.0 / 3.0
    sample = _matched_sample(replace(marginals, compositions_given={key: mixes}), monkeypatch)
    drawn = sample[:, persona_columns].argmax(1)
    for value in (int(largest), int(second)):
        synthetic = sample[(drawn == value) & (sample[:, browsing] == 1)][:, category].mean(0).numpy()
        assert 0.5 * np.abs(synthetic - mixes[value]).sum() < 0.03, value
    assert 0.5 * np.abs(mixes[largest] - marginals.compositions_given[key][largest]).sum() > 0.3


def test_a_groups_mix_is_its_own_where_it_is_signal_and_the_populations_where_it_is_noise():
    population = np.array([0.5, 0.3, 0.15, 0.05])
    true = np.array([[0.2, 0.5, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1], [0.5, 0.3, 0.15, 0.05], [0.1, 0.1, 0.1, 0.7]])
    present = np.array([20_000.0, 20_000.0, 20_000.0, 3.0])  # the last group: a few rows, all noise
    noise = 5.0
    released = present[:, None] * true + np.random.default_rng(0).normal(0.0, noise, true.shape)
    mixes = marginals_module._group_mixes(released, present, population, noise)
    assert np.allclose(mixes.sum(1), 1.0)
    assert np.abs(mixes[:3] - true[:3]).max() < 0.002
    assert 0.5 * np.abs(mixes[3] - population).sum() < 0.1  # its true mix is 0.65 away: not knowable here
    assert np.allclose(marginals_module._group_mixes(released, np.zeros(4), population, noise), population)


def test_the_population_mix_pools_its_one_way_block_with_the_per_group_sums(rows):
    """The browsing category mix of the population is estimated from its 1-way block and from the sum of the
    per-persona blocks (the same sums, with other noise): unbiased, and with clearly less noise than the
    1-way block alone gives (the per-persona blocks carry most of the weight)."""
    name = "browsing.category_share"
    exact = statistic_vectors(rows).double().sum(0).numpy()
    truth = _exact(rows).compositions[name]
    blocks = marginals_module._blocks(WIDE_LAYOUT)
    start = sum(block.width for block in blocks[:[b.key for b in blocks].index((name,))])
    one_way = slice(start, start + len(truth))
    noise_std, draws = 20.0, 300
    rng = np.random.default_rng(0)
    pooled, alone = [], []
    for _ in range(draws):
        noisy = exact + rng.normal(0.0, noise_std, exact.shape)
        pooled.append(marginals_from_sum(noisy, len(rows), noise_std).compositions[name] - truth)
        sums = np.maximum(noisy[one_way], 0.0)
        alone.append(sums / sums.sum() - truth)
    assert (np.array(pooled) ** 2).mean() < 0.6 * (np.array(alone) ** 2).mean()


def test_pooled_population_sums_are_unbiased_with_the_inverse_variance_of_their_parts():
    name, attribute = "browsing.category_share", "persona"
    parts = len(WIDE_LAYOUT.compositions[name][0])
    groups = len(WIDE_LAYOUT.categories[attribute][0])
    rng = np.random.default_rng(1)
    per_group = rng.uniform(100.0, 1000.0, (groups, parts))  # far above the noise: nothing is cut at zero
    one_way_noise, group_noise = 2.0, 0.5
    noise = {("composition", (name,)): one_way_noise, ("composition_given", (attribute, name)): group_noise}
    draws = np.array([marginals_module._population_sums(
        {("composition", (name,)): per_group.sum(0) + rng.normal(0.0, one_way_noise, parts),
         ("composition_given", (attribute, name)): (per_group + rng.normal(0.0, group_noise, per_group.shape)).ravel()},
        noise, name, WIDE_LAYOUT) for _ in range(4000)])
    variance = 1.0 / (1.0 / one_way_noise ** 2 + 1.0 / (groups * group_noise ** 2))
    assert np.abs(draws.mean(0) - per_group.sum(0)).max() < 4 * math.sqrt(variance / 4000)
    assert draws.var(0).mean() == pytest.approx(variance, rel=0.05)
    assert variance < min(one_way_noise ** 2, groups * group_noise ** 2)


def test_the_sensor_tables_are_drawn_together_in_the_released_patterns(rows, monkeypatch):
    """Released patterns where the three small sensor tables always come together (and with C0 half the
    time) are what calibrated samples hold, each table keeping its rate; bits drawn one table at a
    time would put about rate^3 of the devices in all four."""
    joint = np.zeros(2 ** len(JOINT_PRESENCE))
    c0, the_other_three = 1 << JOINT_PRESENCE.index("c0"), sum(1 << JOINT_PRESENCE.index(f)
                                                               for f in ("psys", "freq", "temp"))
    joint[c0], joint[the_other_three], joint[c0 | the_other_three] = 0.05, 0.02, 0.02
    joint[0] = 1.0 - joint.sum()
    marginals = _exact(rows)
    names = list(WIDE_LAYOUT.bits)
    rates = marginals.bit_rates.copy()
    for i, family in enumerate(JOINT_PRESENCE):
        rates[names.index(f"{family}.present")] = joint[[p for p in range(len(joint)) if (p >> i) & 1]].sum()
    marginals = replace(marginals, joint_presence=joint, bit_rates=rates,
                        presence_given={key: np.full_like(r, rates[names.index(f"{key[1]}.present")])
                                        for key, r in marginals.presence_given.items()})
    sample = _matched_sample(marginals, monkeypatch)
    present = np.stack([sample[:, WIDE_LAYOUT.bits[f"{f}.present"][0]].numpy() for f in JOINT_PRESENCE], 1)
    pattern = (present.astype(int) << np.arange(len(JOINT_PRESENCE))).sum(1)
    shares = np.bincount(pattern, minlength=len(joint)) / len(pattern)
    assert np.abs(shares - joint).max() < 0.005, shares
    assert present.mean(0) == pytest.approx(joint @ ((np.arange(len(joint))[:, None] >> np.arange(4)) & 1), rel=0.1)


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
