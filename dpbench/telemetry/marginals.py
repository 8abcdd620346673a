"""Marginals of the wide table, released with differential privacy, for calibrating synthesis.

At epsilon 4 and tens of thousands of devices, DP-SGD learns a VAE whose samples have the right
structure but the wrong marginals: rare categories and rare tables are drawn too often (the noise
floors every softmax); log-normal values are drawn far too spread out (the noise in the decoder's
weights makes their means vary at random with the latent, and the learned spreads absorb that),
which inflates every mean of a heavy-tailed value several-fold; and how a table's presence depends
on the device's attributes is lost (the latent collapses to the prior), while the queries count
devices per attribute among those with a table. So the run spends a part of its budget, once,
before training, on marginals, and synthesis is matched to them
(:meth:`dpbench.telemetry.vae.HurdleVAE.match_marginals`).

The statistic vector of one device (training rows only) has one block per marginal:

* each attribute (chassis, country, ...): its one-hot row;
* each bit (table presence, browser seen): the bit;
* each day count and value summary: a one-hot histogram row over ``HISTOGRAM_BINS`` fixed bins of its
  scaled value, zero when the device lacks the table;
* each composition (browser and category shares, power-state shares): the device's shares, zero when
  the device lacks the table;
* each (attribute, table) pair of ``PRESENCE_GIVEN``: the attribute's one-hot row times the table's
  presence bit (a 2-way marginal: how many devices of each country, CPU, ... have the table). The
  pairs are those the benchmark queries group by: a workload-aware choice (as in AIM, McKenna et al.
  2022), made from the queries, never from the data;
* each (attribute, value) pair of ``VALUE_GIVEN``: the attribute's one-hot row times the value's deviation
  from ``VALUE_CENTRE`` (scaled, clipped to [0, ``HISTOGRAM_UPPER``], divided by the half-width of that
  range, so in [-1, 1]), zero when the device lacks the table: each group's sum of the value, which the
  queries average per group;
* the presence pattern over the four package sensor tables that ChassisAgg joins (``JOINT_PRESENCE``):
  a one-hot row over its 16 patterns (a 4-way marginal; "in none" included);
* each (attribute, composition) pair of ``COMPOSITION_GIVEN``: the attribute's one-hot row times the
  device's shares (an outer product, zero when the device lacks the table): each group's sum of shares,
  the mix the queries average per group.

Every block has L2 norm at most 1 before its weight (a one-hot row or a bit has norm 1 or 0; a vector of
shares that sum to one has L2 norm at most 1, and so has its outer product with a one-hot row); a block is
multiplied by its weight (1, or more where a query needs a sparse marginal more precisely:
``COMPOSITION_WEIGHT`` for a composition's population mix,
``HISTOGRAM_WEIGHT`` for the sensor values ChassisAgg averages, ``JOINT_PRESENCE_WEIGHT``,
``VALUE_GIVEN_WEIGHT``, ``COMPOSITION_GIVEN_WEIGHT``), so a device's vector has norm at most sqrt(sum of
squared weights): the kernel's bound (:mod:`dpbench.privacy.statistics_release`), reached only by a device
present in every table with its values at an end of the scale (a group sum's deviation is -1 at the
bottom, +1 at the top).

Everything after the noisy sum is post-processing: negative counts become zero; histogram bins below
``HISTOGRAM_THRESHOLD`` noise deviations are taken as empty (an empty bin is far more common than a sparse
one, and spurious mass in far bins would move values by orders of magnitude) unless they extend the support of
the bins above it (``HISTOGRAM_EXTEND``), and a value none of whose bins stands above the noise is looked
for at coarser resolutions (``COARSE_FACTORS``); a 2-way rate is shrunk towards the 1-way one by its signal-to-noise
ratio (``RATE_SPREAD``), so that a group whose count is mostly noise inherits the population's rate, and the
rates of one table are scaled together so that the devices they imply equal its 1-way count (without that,
dozens of small cells with their noise cut at zero add devices: 1,175 instead of 800 for the package-power
table at 1M); joint presence patterns below ``JOINT_THRESHOLD`` noise deviations are taken as empty and "in
none" holds the rest of the rows; day counts lost in the noise take the C0 table's (``DAYS_STAND_IN``); a
group's released mean value is shrunk towards the model's own at synthesis, the groups together keeping the
model's total (:meth:`Marginals.group_means`), and a group's mix towards the population's
(:func:`_group_mixes`), which pools the 1-way block with the sums of the per-group blocks
(:func:`_population_sums`). The number of training rows is treated as public, as in DP-SGD's sampling rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dpbench.privacy.statistics_release import StatisticsRelease, release_sum
from dpbench.telemetry.wide_table import WIDE_LAYOUT, WideLayout

HISTOGRAM_BINS = 48
HISTOGRAM_UPPER = 1.2
"""Histogram bins are equal-width over [0, HISTOGRAM_UPPER] in the wide table's scaled units (every
scaled value lies in [0, about 1.15]; larger ones count in the last bin)."""
HISTOGRAM_THRESHOLD = 3.0
"""Histogram bins whose noisy count is below this many noise standard deviations count as empty, unless
they extend the support (``HISTOGRAM_EXTEND``)."""
HISTOGRAM_EXTEND = 1.0
"""A bin next to a kept bin is kept too if its noisy count is at least this many noise standard
deviations, repeatedly: a value's support is contiguous, and its tails (a few devices per bin, each
bin below the threshold) carry much of a heavy-tailed mean (network bytes: -55% to -69% without them,
-7% to -37% with them, on one world's three releases)."""
RATE_SPREAD = 1.0
"""The prior spread of a group's presence rate around the table's overall rate, relative to it: a
group's count is kept with weight s^2 / (s^2 + noise^2), where s is this times the count the overall
rate predicts for the group, and the rest is that prediction."""
PRESENCE_GIVEN: tuple[tuple[str, str], ...] = (
    ("chassis", "psys"), ("chassis", "c0"), ("chassis", "freq"), ("chassis", "temp"),  # ChassisAgg
    ("os", "network"), ("cpu", "network"),  # XeonGeo (Xeon is a CPU), NetAsym
    ("country", "pkg_power"),  # PowerGeo
    ("country", "battery"), ("cpu", "battery"),  # BatteryGeo, BatteryDemo
    ("ram", "memory"),  # RamHist
    ("country", "browsing"), ("persona", "browsing"),  # BrowserRank, PersonaPivot
    ("cpu", "power_states"),  # SleepPivot
)
"""(attribute, table family) pairs whose 2-way presence marginal is released: what the queries group by."""
JOINT_PRESENCE: tuple[str, ...] = ("psys", "c0", "freq", "temp")
"""Table families whose joint presence pattern is released: the four package sensor tables that
ChassisAgg inner-joins. Its answer holds only the devices present in all four, and presence bits
drawn one table at a time put next to none there even when each table's rate is right."""
JOINT_PRESENCE_WEIGHT = 4.0
"""Weight of the joint presence block: the patterns other than "none" hold a few dozen to a few
thousand devices, and the one ChassisAgg reads (in all four tables) 15-60 in 200,000. At weight 2 its
noise (12.6 devices at the default budget) put it under ``JOINT_THRESHOLD`` on whole noise draws and
ChassisAgg lost every group; at 4 the noise is 6.5 devices and every other block's is 3.7% higher.
Paired rereleases of dev worlds 1-8 (same models, same noise draws; scripts/telemetry_rerelease.py):
value-only passes 8.375 at weight 2, 8.5 at 4."""
DAYS_STAND_IN = "c0.days"
"""A table's day counts whose own histogram is lost in the noise take the C0 table's (the sparse
package tables come from the same telemetry collector), or, if that is lost too (a small corpus), the
mean of every released day-count histogram. Otherwise they would be the model's own, untrained for
tables it rarely sees: a hundred and more days per device, which ChassisAgg's inner join of the four
sensor tables multiplies into billions of rows."""
JOINT_THRESHOLD = 1.0
"""Joint presence patterns (other than "none") whose noisy count is below this many noise standard
deviations count as empty."""
COMPOSITION_WEIGHT = {"browsing.category_share": 2.0}
"""Weights of composition blocks above 1 (their noise, in shares, is divided by the weight). The browsing
category mix is also the sum of its per-persona mixes (``COMPOSITION_GIVEN``), which carry most of its
weight; the two are pooled (:func:`_population_sums`)."""
COARSE_FACTORS = (2, 4, 8, 16)
"""How many adjacent bins a value's histogram sums, in turn, where none of its own bins stands above the
noise (:func:`_coarse_bins`): a sensor table of a hundred devices in 200,000 spreads them over a dozen bins,
each below the noise, but over two or three bins of four to eight. Day counts have a stand-in instead
(``DAYS_STAND_IN``)."""
HISTOGRAM_WEIGHT = {f"{family}.{summary}": 2.0 for family in ("psys", "freq", "temp") for summary in ("value", "days")}
"""Weights of histogram blocks above 1: the values and day counts of the three sparse sensor tables
ChassisAgg joins (a few hundred devices in 200,000 spread over a dozen bins: at weight 1 no bin stands
above the noise, and even the coarse bins of ``COARSE_FACTORS`` often do not).
Package power, as sparse, is left at 1: at weight 2 its synthetic nrs-weighted mean was still 5-25 times
off on five worlds, too low on some and too high on others, and PowerGeo's groups of 1-9 devices are
beyond the release either way."""
VALUE_GIVEN: tuple[tuple[str, str], ...] = (
    ("chassis", "c0.value"),  # ChassisAgg
    ("country", "battery.duration_mins"), ("country", "battery.power_ons"),  # BatteryGeo
    ("cpu", "battery.duration_mins"),  # BatteryDemo
    ("ram", "memory.percent_used"),  # RamHist
)
"""(attribute, value summary) pairs whose sum per value of the attribute is released: what the queries
average a value by, where the table is large enough for a group's mean to stand above the noise. Each
pair's table family is among ``PRESENCE_GIVEN`` with the same attribute: its 2-way count is the
group's number of present rows (a test checks the pairing)."""
VALUE_CENTRE = HISTOGRAM_UPPER / 2
"""Group sums are of each value's deviation from the middle of its range: a device contributes at most
half the range, not all of it, and the noise of the group's count moves its mean by that count's noise
times the mean's distance from the centre, not times the mean (at the old zero-based sums, a group of
150 devices had an error of 0.17 in scaled units, 0.16 of it the count's)."""
VALUE_GIVEN_WEIGHT = {("cpu", "battery.duration_mins"): 3.0}
"""Weights of group-sum blocks above 1: BatteryDemo's CPU groups hold 100-600 battery devices, and at
weight 1 their mean minutes are about 2x off (a noise of 0.1 in the log scale)."""
VALUE_SPREAD_FLOOR = 0.01
"""The least spread of groups' mean values around the means the model gives them, in scaled units. The
spread ``s`` itself is estimated from the release (:func:`between_group_spread`: C0 residency differs
by chassis far more than battery minutes by country); a group's released mean is kept with weight
s^2 / (s^2 + error^2), the rest is the model's own."""
REMAINDER_SPREADS = 2.0
"""The groups that are mostly noise may take back what the others moved up to this many group spreads
from their priors (:meth:`Marginals.group_means`)."""
SPREAD_EVIDENCE_ERROR = 0.2
"""Groups whose released mean has a noise error above this (scaled units) are left out of estimating the
groups' spread: their means are clipped to the scale, so their deviations understate their noise and
would pull the estimate to zero."""
COMPOSITION_GIVEN: tuple[tuple[str, str], ...] = (
    ("persona", "browsing.category_share"),  # PersonaPivot
    ("cpu", "power_states.state_share"),  # SleepPivot
)
"""(attribute, composition) pairs whose sum of shares per value of the attribute is released: the
browsing category mix of each persona and the power-state mix of each CPU, which PersonaPivot and
SleepPivot report (the model alone gives every group about the population's mix). Each pair's table
family is among ``PRESENCE_GIVEN`` with the same attribute: its 2-way count is the group's number of
present rows."""
COMPOSITION_GIVEN_WEIGHT = {("persona", "browsing.category_share"): 7.0, ("cpu", "power_states.state_share"): 2.0}
"""Weights of the per-group mixes: a persona holds a few hundred to a few thousand browsing devices in
200,000, and PersonaPivot scores each category's share (most below 1%) per persona, so this block carries
most of the browsing mix's weight (its 1-way block only 2: the persona sums add up to the population's);
a CPU's four power states have shares of 5-60%."""
MIX_EVIDENCE_ERROR = 0.5
"""Entries of a group's mix whose noise, relative to the count the population's mix predicts for them,
is above this are left out of estimating how far groups' mixes spread (as ``SPREAD_EVIDENCE_ERROR``)."""
RELEASE_NAME = "telemetry_marginals"
CHUNK_ROWS = 16_384


_BlockKey = tuple[str, tuple[str, ...]]
"""A block's (kind, key)."""


@dataclass(frozen=True)
class _Block:
    """One marginal in the statistic vector: ``width`` entries, each block of norm <= ``weight``."""

    kind: str
    key: tuple[str, ...]
    width: int
    weight: float = 1.0


def _blocks(layout: WideLayout) -> list[_Block]:
    blocks = [_Block("category", (name,), len(values)) for name, (values, _) in layout.categories.items()]
    blocks += [_Block("bit", (name,), 1) for name in layout.bits]
    blocks += [_Block("histogram", (name,), HISTOGRAM_BINS, HISTOGRAM_WEIGHT.get(name, 1.0))
               for name in layout.gaussians]
    blocks += [_Block("composition", (name,), len(parts), COMPOSITION_WEIGHT.get(name, 1.0))
               for name, (parts, _, _) in layout.compositions.items()]
    blocks += [_Block("presence_given", (attribute, family), len(layout.categories[attribute][0]))
               for attribute, family in PRESENCE_GIVEN]
    blocks += [_Block("value_given", (attribute, name), len(layout.categories[attribute][0]),
                      VALUE_GIVEN_WEIGHT.get((attribute, name), 1.0)) for attribute, name in VALUE_GIVEN]
    blocks.append(_Block("joint_presence", JOINT_PRESENCE, 2 ** len(JOINT_PRESENCE), JOINT_PRESENCE_WEIGHT))
    blocks += [_Block("composition_given", (attribute, name),
                      len(layout.categories[attribute][0]) * len(layout.compositions[name][0]),
                      COMPOSITION_GIVEN_WEIGHT[attribute, name]) for attribute, name in COMPOSITION_GIVEN]
    return blocks


def sensitivity(layout: WideLayout = WIDE_LAYOUT) -> float:
    """The L2 bound of one device's statistic vector: sqrt of the sum of the blocks' squared weights."""
    return math.sqrt(sum(block.weight ** 2 for block in _blocks(layout)))


def marginals_release(noise_multiplier: float, layout: WideLayout = WIDE_LAYOUT) -> StatisticsRelease:
    """The kernel release of the marginals at ``noise_multiplier``."""
    return StatisticsRelease(RELEASE_NAME, sensitivity(layout), noise_multiplier)


def _bin_of(scaled: torch.Tensor) -> torch.Tensor:
    width = HISTOGRAM_UPPER / HISTOGRAM_BINS
    return torch.clamp((scaled / width).floor().long(), 0, HISTOGRAM_BINS - 1)


def _block_rows(block: _Block, rows: torch.Tensor, layout: WideLayout) -> torch.Tensor:
    """The block's entries for each wide row, before its weight."""
    if block.kind == "category":
        return rows[:, layout.categories[block.key[0]][1]]
    if block.kind == "bit":
        return rows[:, layout.bits[block.key[0]][0]:layout.bits[block.key[0]][0] + 1]
    if block.kind == "histogram":
        column, gate, _ = layout.gaussians[block.key[0]]
        histogram = torch.zeros(rows.shape[0], HISTOGRAM_BINS, dtype=rows.dtype)
        histogram[torch.arange(rows.shape[0]), _bin_of(rows[:, column])] = 1.0
        return histogram * rows[:, gate:gate + 1]
    if block.kind == "composition":
        _, columns, gate = layout.compositions[block.key[0]]
        return rows[:, columns] * rows[:, gate:gate + 1]
    if block.kind == "value_given":
        attribute, name = block.key
        column, gate, _ = layout.gaussians[name]
        deviation = (rows[:, column:column + 1].clamp(0.0, HISTOGRAM_UPPER) - VALUE_CENTRE) / VALUE_CENTRE
        return rows[:, layout.categories[attribute][1]] * deviation * rows[:, gate:gate + 1]
    if block.kind == "joint_presence":
        return F.one_hot(_pattern_index(rows, block.key, layout), block.width).to(rows.dtype)
    if block.kind == "composition_given":
        attribute, name = block.key
        _, columns, gate = layout.compositions[name]
        shares = rows[:, columns] * rows[:, gate:gate + 1]
        return (rows[:, layout.categories[attribute][1], None] * shares[:, None, :]).flatten(1)
    attribute, family = block.key  # presence_given
    presence = layout.bits[f"{family}.present"][0]
    return rows[:, layout.categories[attribute][1]] * rows[:, presence:presence + 1]


def _pattern_index(rows: torch.Tensor, families: tuple[str, ...], layout: WideLayout) -> torch.Tensor:
    """Each row's presence pattern over ``families``: bit i set when it has family i's table."""
    columns = [layout.bits[f"{family}.present"][0] for family in families]
    return (rows[:, columns].round().long() << torch.arange(len(families))).sum(dim=1)


def statistic_vectors(rows: torch.Tensor, layout: WideLayout = WIDE_LAYOUT) -> torch.Tensor:
    """The statistic vector of each wide row ``[n, layout.width]`` (see the module docstring)."""
    return torch.cat([block.weight * _block_rows(block, rows, layout) for block in _blocks(layout)], dim=1)


@dataclass(frozen=True)
class Marginals:
    """The released marginals, post-processed: what synthesis is matched to.

    categories: attribute -> shares of its values. bit_rates: one per bit of the layout (a gated bit's
    rate among the rows whose gate is set). histograms: day count or value -> bin masses summing to
    one, or None where no bin survived the noise. compositions: name -> mean shares among present rows.
    presence_given: (attribute, family) -> the family's presence rate among devices with each value of
    the attribute. joint_presence: shares of the presence patterns over ``JOINT_PRESENCE`` (pattern
    index: bit i set when the device has family i's table). value_sums, value_present, value_noise:
    per pair of ``VALUE_GIVEN``, each group's noisy sum of the value's deviation from ``VALUE_CENTRE``
    (scaled units, the value clipped to [0, ``HISTOGRAM_UPPER``]), its noisy count of present rows (its
    2-way presence count, cut at zero) and the noise standard deviations of that sum and that count;
    :meth:`group_means` turns them into means. compositions_given: per pair of
    ``COMPOSITION_GIVEN``, each group's mean shares among its present rows ``[groups, parts]``, shrunk
    towards the population's (:func:`_group_mixes`).
    """

    categories: dict[str, np.ndarray]
    bit_rates: np.ndarray
    histograms: dict[str, np.ndarray | None]
    compositions: dict[str, np.ndarray]
    presence_given: dict[tuple[str, str], np.ndarray]
    joint_presence: np.ndarray
    value_sums: dict[tuple[str, str], np.ndarray]
    value_present: dict[tuple[str, str], np.ndarray]
    value_noise: dict[tuple[str, str], tuple[float, float]]
    compositions_given: dict[tuple[str, str], np.ndarray]

    def group_means(self, key: tuple[str, str], prior: np.ndarray) -> np.ndarray:
        """Each group's mean of a ``VALUE_GIVEN`` value (scaled units): its released mean, shrunk towards
        ``prior`` (the mean the model gives the group, whose overall mean is the released histogram's) by its
        signal-to-noise ratio (the groups' spread estimated by :func:`between_group_spread`).

        The shrunk means keep the prior's total over the groups' released row counts: what the groups
        that are signal move away from their priors, the groups that are noise (and those with under one
        present row) take back in proportion to how much of them is prior (:func:`_remainder_shift`), up to
        ``REMAINDER_SPREADS`` group spreads; beyond that the total is left off rather than the noisy groups
        moved further. Means stay on the scale [0, ``HISTOGRAM_UPPER``].
        Shrinking every small group towards the population's mean would otherwise put the total off by
        as much as one large group differs from the rest (a country with 40% of the battery devices, a
        third higher than the others: every other country's mean came out 0.04 too high, and raking
        against the CPUs' means then took every country's down by as much, the large one's too)."""
        present = self.value_present[key]
        released = np.clip(VALUE_CENTRE + self.value_sums[key] / np.maximum(present, 1e-12), 0.0, HISTOGRAM_UPPER)
        sum_noise, count_noise = self.value_noise[key]
        # of a ratio of two noisy counts, to first order: the count's noise moves it by the deviation times its own
        error = np.hypot(sum_noise, np.abs(released - VALUE_CENTRE) * count_noise) / np.maximum(present, 1e-12)
        answered = present >= 1.0
        informative = answered & (error <= SPREAD_EVIDENCE_ERROR)  # a mean clipped to the scale says little
        spread = between_group_spread(released[informative] - prior[informative], error[informative])
        weight = np.where(answered, spread ** 2 / np.maximum(spread ** 2 + error ** 2, 1e-300), 0.0)
        shrunk = prior + weight * (released - prior)
        shift = _remainder_shift(shrunk - prior, 1.0 - weight, np.maximum(present, 0.0), spread)
        return np.clip(shrunk + (1.0 - weight) * shift, 0.0, HISTOGRAM_UPPER)

    @staticmethod
    def bin_edges() -> np.ndarray:
        return np.linspace(0.0, HISTOGRAM_UPPER, HISTOGRAM_BINS + 1)

    def quantiles(self, name: str, probabilities: np.ndarray) -> np.ndarray | None:
        """Quantiles of a histogram (uniform within bins), or None if it has no mass."""
        masses = self.histograms[name]
        if masses is None:
            return None
        edges = self.bin_edges()
        occupied = np.flatnonzero(masses > 0)
        # the CDF at the left edge of the first occupied bin and at the right edge of each occupied bin
        knots = np.concatenate([[edges[occupied[0]]], edges[occupied + 1]])
        cdf = np.concatenate([[0.0], np.cumsum(masses[occupied])])
        return np.interp(probabilities, cdf / cdf[-1], knots)


def marginals_from_sum(noisy_sum: np.ndarray, rows: int, noise_std: float,
                       layout: WideLayout = WIDE_LAYOUT) -> Marginals:
    """Post-process the released sum of :func:`statistic_vectors` over ``rows`` training rows."""
    blocks = _blocks(layout)
    if len(noisy_sum) != sum(block.width for block in blocks):
        raise ValueError(f"released sum has {len(noisy_sum)} entries; the layout's statistic vector has "
                         f"{sum(block.width for block in blocks)}")
    raw: dict[_BlockKey, np.ndarray] = {}
    noise: dict[_BlockKey, float] = {}
    position = 0
    for block in blocks:  # each block in count units (its weight divided out)
        entries = np.asarray(noisy_sum[position:position + block.width], dtype=np.float64)
        raw[block.kind, block.key] = entries / block.weight
        noise[block.kind, block.key] = noise_std / block.weight
        position += block.width
    sums = {key: np.maximum(entries, 0.0) for key, entries in raw.items()}  # negative counts at zero

    categories = {name: _shares(sums["category", (name,)]) for name in layout.categories}
    bit_counts = {name: float(sums["bit", (name,)][0]) for name in layout.bits}
    gate_name = {column: name for name, (column, _) in layout.bits.items()}
    bit_rates = np.array([bit_counts[name] / max(rows if gate is None else bit_counts[gate_name[gate]], 1.0)
                          for name, (_, gate) in layout.bits.items()]).clip(0.0, 1.0)
    histograms = {}
    for name in layout.gaussians:
        bins = sums["histogram", (name,)]
        bins = np.where(_support(bins, noise["histogram", (name,)]), bins, 0.0)
        if bins.sum() <= 0 and not name.endswith(".days"):
            bins = _coarse_bins(raw["histogram", (name,)], noise["histogram", (name,)])
        histograms[name] = bins / bins.sum() if bins.sum() > 0 else None
    released_days = [masses for name, masses in histograms.items() if name.endswith(".days") and masses is not None]
    pooled = np.mean(released_days, axis=0) if released_days else None
    for name in [name for name in layout.gaussians if name.endswith(".days")]:
        if histograms[name] is None:
            histograms[name] = histograms[DAYS_STAND_IN] if histograms[DAYS_STAND_IN] is not None else pooled
    compositions = {name: _shares(_population_sums(raw, noise, name, layout)) for name in layout.compositions}
    presence_given = {}
    for attribute, family in PRESENCE_GIVEN:
        overall = bit_rates[list(layout.bits).index(f"{family}.present")]
        group = categories[attribute] * rows
        expected = group * overall  # each group's count of the table's devices if it had the overall rate
        signal = (RATE_SPREAD * expected) ** 2
        weight = signal / (signal + noise["presence_given", (attribute, family)] ** 2)
        joint = expected + weight * (raw["presence_given", (attribute, family)] - expected)
        rates = np.clip(np.where(group > 0, joint / np.maximum(group, 1e-12), overall), 0.0, 1.0)
        implied = float(group @ rates)  # the table's devices these rates imply, made equal to the 1-way count
        if implied > 0:
            rates = np.clip(rates * overall * rows / implied, 0.0, 1.0)
        presence_given[attribute, family] = rates
    joint = raw["joint_presence", JOINT_PRESENCE].copy()
    joint[1:] = np.where(joint[1:] >= JOINT_THRESHOLD * noise["joint_presence", JOINT_PRESENCE], joint[1:], 0.0)
    joint[0] = max(rows - joint[1:].sum(), 1.0)  # "none": the rest of the (public) number of rows
    value_sums, value_present, value_noise = {}, {}, {}
    for attribute, name in VALUE_GIVEN:
        key = (attribute, name)
        value_sums[key] = VALUE_CENTRE * raw["value_given", key]
        counts = ("presence_given", (attribute, name.split(".")[0]))
        value_present[key] = sums[counts]  # the group's own count: a shrunk rate would inflate its mean
        value_noise[key] = (VALUE_CENTRE * noise["value_given", key], noise[counts])
    compositions_given = {}
    for attribute, name in COMPOSITION_GIVEN:
        parts = len(layout.compositions[name][0])
        released = raw["composition_given", (attribute, name)].reshape(-1, parts)
        present = sums["presence_given", (attribute, name.split(".")[0])]
        compositions_given[attribute, name] = _group_mixes(released, present, compositions[name],
                                                           noise["composition_given", (attribute, name)])
    return Marginals(categories, bit_rates, histograms, compositions, presence_given, joint / joint.sum(),
                     value_sums, value_present, value_noise, compositions_given)


def _population_sums(raw: dict[_BlockKey, np.ndarray], noise: dict[_BlockKey, float], name: str,
                     layout: WideLayout) -> np.ndarray:
    """The population's sums of composition ``name``'s shares, cut at zero: its 1-way block pooled with the
    sums over the groups of each ``COMPOSITION_GIVEN`` block of the same composition (every row has exactly
    one value of an attribute, so the groups' sums add up to the 1-way sums), each weighted by its precision
    (the inverse of its noise variance: a group sum of ``groups`` entries has ``groups`` times an entry's)."""
    estimates = [(raw["composition", (name,)], noise["composition", (name,)] ** 2)]
    parts = len(layout.compositions[name][0])
    for attribute, given in COMPOSITION_GIVEN:
        if given == name:
            groups = raw["composition_given", (attribute, name)].reshape(-1, parts)
            estimates.append((groups.sum(axis=0), groups.shape[0] * noise["composition_given", (attribute, name)] ** 2))
    precision = sum(1.0 / variance for _, variance in estimates)
    return np.maximum(sum(sums / variance for sums, variance in estimates) / precision, 0.0)


def _group_mixes(released: np.ndarray, present: np.ndarray, population: np.ndarray, noise_std: float) -> np.ndarray:
    """Each group's mix (rows summing to one) from its ``released`` noisy sums of shares ``[groups, parts]``:
    each sum shrunk towards what the ``population`` mix predicts for the group's ``present`` rows by its
    signal-to-noise ratio, the groups' relative spread around that prediction estimated from the release
    (:func:`between_group_spread` over the entries whose relative noise is at most ``MIX_EVIDENCE_ERROR``);
    a group with no present rows takes the population's mix."""
    expected = present[:, None] * population[None, :]
    relative_error = noise_std / np.maximum(expected, 1e-12)
    evidence = relative_error <= MIX_EVIDENCE_ERROR
    spread = between_group_spread((released[evidence] - expected[evidence]) / expected[evidence],
                                  relative_error[evidence])
    signal = (spread * expected) ** 2
    shrunk = np.maximum(expected + signal / np.maximum(signal + noise_std ** 2, 1e-300) * (released - expected), 0.0)
    totals = shrunk.sum(axis=1, keepdims=True)
    return np.where(totals > 0, shrunk / np.maximum(totals, 1e-300), population[None, :])


def _remainder_shift(moved: np.ndarray, slack: np.ndarray, rows: np.ndarray, spread: float) -> float:
    """The shift of the groups' prior part that keeps their row-weighted total: the groups moved by
    ``moved`` from their priors, and each group's prior part ``slack`` over its ``rows`` takes an equal
    share of the opposite. It is a difference of noisy totals, large when few rows are left to take it,
    so it is kept within ``REMAINDER_SPREADS`` of the groups' ``spread``."""
    room = float(rows @ slack)
    if room <= 0.0:
        return 0.0
    limit = REMAINDER_SPREADS * spread
    return float(np.clip(-(rows @ moved) / room, -limit, limit))


def between_group_spread(deviations: np.ndarray, errors: np.ndarray) -> float:
    """The spread of groups' true means around their priors, from the released means' ``deviations`` from
    the priors and those means' noise ``errors``: the excess of the deviations' spread over the noise,
    with the groups weighted by their precision given the spread (a fixed point, as Paule and Mandel's
    random-effects estimate); at least ``VALUE_SPREAD_FLOOR``."""
    spread = VALUE_SPREAD_FLOOR
    for _ in range(20):
        weight = 1.0 / (spread ** 2 + errors ** 2)
        excess = float((weight * (deviations ** 2 - errors ** 2)).sum() / weight.sum()) if len(weight) else 0.0
        spread = max(math.sqrt(max(excess, 0.0)), VALUE_SPREAD_FLOOR)
    return spread


def _coarse_bins(bins: np.ndarray, noise_std: float) -> np.ndarray:
    """A value's histogram where no bin of its own stands above the noise: ``bins`` summed ``k`` adjacent at a
    time (``COARSE_FACTORS``, finest first; a sum of ``k`` bins has sqrt(k) times a bin's noise), the first
    resolution where some sum stands above it (:func:`_support`), each kept sum spread evenly over its bins;
    all zero if none does."""
    for k in COARSE_FACTORS:
        merged = bins.reshape(-1, k).sum(axis=1)
        kept = np.where(_support(merged, noise_std * math.sqrt(k)), merged, 0.0)
        if kept.sum() > 0:
            return np.repeat(kept / k, k)
    return np.zeros_like(bins)


def _support(bins: np.ndarray, noise_std: float) -> np.ndarray:
    """The bins kept: those above ``HISTOGRAM_THRESHOLD`` deviations, grown bin by bin into neighbours
    above ``HISTOGRAM_EXTEND`` deviations."""
    kept = bins >= HISTOGRAM_THRESHOLD * noise_std
    candidates = bins >= HISTOGRAM_EXTEND * noise_std
    while True:
        neighbours = np.zeros_like(kept)
        neighbours[1:] |= kept[:-1]
        neighbours[:-1] |= kept[1:]
        grown = kept | (neighbours & candidates)
        if (grown == kept).all():
            return kept
        kept = grown


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))


def _chunks(rows: torch.Tensor, layout: WideLayout) -> Iterator[torch.Tensor]:
    for start in range(0, rows.shape[0], CHUNK_ROWS):
        yield statistic_vectors(rows[start:start + CHUNK_ROWS], layout)


def release_marginals(rows: torch.Tensor, release: StatisticsRelease, generator: torch.Generator,
                      layout: WideLayout = WIDE_LAYOUT) -> np.ndarray:
    """The kernel's noisy sum of the statistic vectors of ``rows`` (the training rows)."""
    return release_sum(_chunks(rows, layout), release, generator).numpy()


RELEASED_FILE = "released_marginals.npz"


def save_released(path: Path, noisy_sum: np.ndarray, rows: int, release: StatisticsRelease) -> None:
    """Keep a release in the run directory: synthesis later re-reads it instead of releasing again."""
    np.savez(path, noisy_sum=noisy_sum, rows=rows, bound=release.bound, noise_multiplier=release.noise_multiplier)


def load_released(path: Path, layout: WideLayout = WIDE_LAYOUT) -> Marginals:
    """The marginals of a release saved by :func:`save_released`."""
    with np.load(path) as saved:
        noise_std = float(saved["bound"]) * float(saved["noise_multiplier"])
        return marginals_from_sum(saved["noisy_sum"], int(saved["rows"]), noise_std, layout)
