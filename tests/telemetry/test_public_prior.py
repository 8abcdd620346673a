"""The public prior of synthesis: presence shares and mean days per table from the SPEC's table sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpbench.models.vae import HurdleVAE
from dpbench.telemetry.public_prior import FAMILY_TABLES, bit_targets, match_day_counts, mean_days, presence_share
from dpbench.telemetry.wide_table import FAMILIES, WIDE_LAYOUT, WINDOW_DAYS, decode_columns


def test_every_family_has_its_spec_table():
    assert set(FAMILY_TABLES) == set(FAMILIES)
    assert presence_share("network") == pytest.approx(37_224 / 1_000_000)       # SPEC: devices
    assert mean_days("network") == pytest.approx(5_721_356 / 37_224 / 2)        # SPEC: rows, two per day
    assert mean_days("browsing") == pytest.approx(4_537_100 / 64_276)


def test_matched_bit_rates_hold_in_samples():
    torch.manual_seed(0)
    model = HurdleVAE(hidden=(32, 16), latent=4)
    targets = bit_targets()
    targets[list(WIDE_LAYOUT.bits).index("browser.edge")] = 0.3   # a gated bit: a share of browsing devices
    offsets = model.match_bit_rates(targets, 20_000, torch.Generator().manual_seed(2))
    sample = decode_columns(model.sample(200_000, torch.Generator().manual_seed(3)).numpy())
    for name in ("network", "memory", "browsing", "battery"):
        target = presence_share(name)
        assert sample.present[name].mean() == pytest.approx(target, rel=0.1), name
    edge = sample.present["browser.edge"][sample.present["browsing"]].mean()
    assert edge == pytest.approx(0.3, rel=0.05)
    assert torch.equal(model.bit_offsets, offsets) and offsets[0] < -1   # network: from about 50% to 3.7%
    assert torch.isnan(targets[list(WIDE_LAYOUT.bits).index("browser.chrome")]) and offsets[-3] == 0


def test_day_counts_are_scaled_to_the_public_mean():
    rng = np.random.default_rng(0)
    features = np.zeros((5000, WIDE_LAYOUT.width), dtype=np.float32)
    decoded = decode_columns(features)
    for family in FAMILIES:
        decoded.present[family] = rng.random(5000) < 0.3
        decoded.days[family] = rng.integers(1, 600, size=5000)
    untouched = decoded.days["memory"][~decoded.present["memory"]].copy()
    factors = match_day_counts(decoded)
    for family in FAMILIES:
        days = decoded.days[family][decoded.present[family]]
        assert days.mean() == pytest.approx(mean_days(family), rel=0.02), family
        assert days.min() >= 1 and days.max() <= WINDOW_DAYS and days.dtype == np.int64
    assert factors["psys"] < 0.1 < factors["memory"]
    assert np.array_equal(decoded.days["memory"][~decoded.present["memory"]], untouched)
