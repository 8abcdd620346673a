"""One-way marginals of the wide table, released with differential privacy, for calibrating synthesis.

At epsilon 4 and tens of thousands of devices, DP-SGD learns a VAE whose samples have the right
structure but the wrong one-way marginals: rare categories and rare tables are drawn too often (the
noise floors every softmax), and log-normal values are drawn far too spread out (the noise in the
decoder's weights makes their means vary at random with the latent, and the learned spreads absorb
that), which inflates every mean of a heavy-tailed value several-fold. So the run spends a small part
of its budget, once, before training, on the marginals themselves, and synthesis is calibrated to
them (:meth:`dpbench.models.vae.HurdleVAE.calibrate`).

The statistic vector of one device (training rows only) has one block per one-way marginal:

* each attribute (chassis, country, ...): its one-hot row;
* each bit (table presence, browser seen): the bit;
* each day count and value summary: a one-hot histogram row over ``HISTOGRAM_BINS`` fixed bins of its
  scaled value, zero when the device lacks the table;
* each composition (browser and category shares, power-state shares): the device's shares, zero when
  the device lacks the table.

Every block has L2 norm at most 1 (a one-hot row or a bit has norm 1 or 0; a vector of shares that
sum to one has L2 norm at most 1), so a device's vector has norm at most sqrt(number of blocks): the
kernel's bound (:mod:`dpbench.privacy.statistics_release`), reached only by a device present in
every table. Everything below the noisy sum is post-processing: negative counts become zero, and
histogram bins below ``HISTOGRAM_THRESHOLD`` noise deviations are taken as empty (an empty bin
is far more common than a sparse one, and spurious mass in far bins would move values by orders of
magnitude). The number of training rows is treated as public, as in DP-SGD's sampling rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dpbench.privacy.statistics_release import StatisticsRelease, release_sum
from dpbench.telemetry.wide_table import WIDE_LAYOUT, WideLayout

HISTOGRAM_BINS = 48
HISTOGRAM_UPPER = 1.2
"""Histogram bins are equal-width over [0, HISTOGRAM_UPPER] in the wide table's scaled units (every
scaled value lies in [0, about 1.15]; larger ones count in the last bin)."""
HISTOGRAM_THRESHOLD = 3.0
"""Histogram bins whose noisy count is below this many noise standard deviations count as empty."""
RELEASE_NAME = "telemetry_marginals"
CHUNK_ROWS = 65_536


def block_count(layout: WideLayout = WIDE_LAYOUT) -> int:
    """Number of marginals, each one a block of L2 norm at most 1 in a device's statistic vector."""
    return len(layout.categories) + len(layout.bits) + len(layout.gaussians) + len(layout.compositions)


def marginals_release(noise_multiplier: float, layout: WideLayout = WIDE_LAYOUT) -> StatisticsRelease:
    """The kernel release of the marginals at ``noise_multiplier`` (sensitivity sqrt(block count))."""
    return StatisticsRelease(RELEASE_NAME, math.sqrt(block_count(layout)), noise_multiplier)


def _bin_of(scaled: torch.Tensor) -> torch.Tensor:
    width = HISTOGRAM_UPPER / HISTOGRAM_BINS
    return torch.clamp((scaled / width).floor().long(), 0, HISTOGRAM_BINS - 1)


def statistic_vectors(rows: torch.Tensor, layout: WideLayout = WIDE_LAYOUT) -> torch.Tensor:
    """The statistic vector of each wide row ``[n, layout.width]`` (see the module docstring)."""
    n = rows.shape[0]
    parts = [rows[:, columns] for _, columns in layout.categories.values()]
    parts.append(rows[:, [column for column, _ in layout.bits.values()]])
    for column, gate, _ in layout.gaussians.values():
        histogram = torch.zeros(n, HISTOGRAM_BINS, dtype=rows.dtype)
        histogram[torch.arange(n), _bin_of(rows[:, column])] = 1.0
        parts.append(histogram * rows[:, gate:gate + 1])
    parts.extend(rows[:, columns] * rows[:, gate:gate + 1] for _, columns, gate in layout.compositions.values())
    return torch.cat(parts, dim=1)


@dataclass(frozen=True)
class Marginals:
    """The released marginals, post-processed: what synthesis is calibrated to.

    categories: attribute -> shares of its values. bit_rates: one per bit of the layout (a gated bit's
    rate among the rows whose gate is set). histograms: day count or value -> bin masses summing to
    one, or None where no bin survived the noise. compositions: name -> mean shares among present rows.
    """

    categories: dict[str, np.ndarray]
    bit_rates: np.ndarray
    histograms: dict[str, np.ndarray | None]
    compositions: dict[str, np.ndarray]

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
    counts = np.maximum(np.asarray(noisy_sum, dtype=np.float64), 0.0)
    position = 0

    def take(width: int) -> np.ndarray:
        nonlocal position
        position += width
        return counts[position - width:position]

    categories = {name: _shares(take(columns.stop - columns.start)) for name, (_, columns) in layout.categories.items()}
    bit_counts = take(len(layout.bits))
    bit_index = {column: j for j, (column, _) in enumerate(layout.bits.values())}
    gate_counts = np.array([rows if gate is None else bit_counts[bit_index[gate]] for _, gate in layout.bits.values()])
    bit_rates = np.clip(bit_counts / np.maximum(gate_counts, 1.0), 0.0, 1.0)
    histograms = {}
    for name in layout.gaussians:
        bins = take(HISTOGRAM_BINS)
        bins = np.where(bins >= HISTOGRAM_THRESHOLD * noise_std, bins, 0.0)
        histograms[name] = bins / bins.sum() if bins.sum() > 0 else None
    compositions = {name: _shares(take(columns.stop - columns.start))
                    for name, (_, columns, _) in layout.compositions.items()}
    if position != len(counts):
        raise ValueError(f"released sum has {len(counts)} entries; the layout's statistic vector has {position}")
    return Marginals(categories, bit_rates, histograms, compositions)


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
