"""The wide table and its decoder: a device's row is recoverable, and decoding real rows back into
reporting tables reproduces the benchmark answers (the decoder's own loss, before any model)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from dpbench.telemetry.corpus import open_corpus
from dpbench.telemetry.decoder import write_tables
from dpbench.telemetry.synthesis import score_tables
from dpbench.telemetry.wide_table import WIDE_LAYOUT, build_wide_table, decode_columns


@pytest.fixture(scope="module")
def wide(small_corpus):
    return build_wide_table(small_corpus[0])


def test_layout_is_about_three_hundred_columns_and_every_column_is_placed_once():
    layout = WIDE_LAYOUT
    placed = [i for _, s in layout.categories.values() for i in range(s.start, s.stop)]
    placed += [c for c, _ in layout.bits.values()] + [c for c, _, _ in layout.gaussians.values()]
    placed += [i for _, s, _ in layout.compositions.values() for i in range(s.start, s.stop)]
    assert sorted(placed) == list(range(layout.width)) and 250 <= layout.width <= 350


def test_rows_agree_with_the_tables(small_corpus, wide):
    tables, report = small_corpus
    assert wide.features.shape == (report.n_devices, WIDE_LAYOUT.width)
    decoded = decode_columns(wide.features)
    for family, table in (("memory", "system_memory_utilization"), ("battery", "system_batt_dc_events"),
                          ("browsing", "system_web_cat_pivot_duration")):
        assert decoded.present[family].sum() == report.devices[table]
        assert decoded.days[family][decoded.present[family]].sum() == report.rows[table]
    for name, (_, columns) in WIDE_LAYOUT.categories.items():
        assert np.all(wide.features[:, columns].sum(axis=1) == 1), name
    sysinfo = pq.read_table(tables / "system_sysinfo_unique_normalized.parquet").to_pandas().set_index("guid")
    ram = np.array([float(v) for v in WIDE_LAYOUT.categories["ram"][0]])[decoded.categories["ram"]]
    np.testing.assert_array_equal(ram, sysinfo.loc[wide.guids, "ram"].to_numpy())


def test_decoding_real_rows_reproduces_the_answers(small_corpus, wide, tmp_path):
    rows = write_tables(wide.features, tmp_path, np.random.default_rng(0))
    assert set(open_corpus(tmp_path)) == set(rows)  # all 13 tables, valid against the schema
    scores = {s.query: s for s in score_tables(small_corpus[0], tmp_path)}
    evaluable = [s for s in scores.values() if not s.error]
    assert len(evaluable) >= 7 and sum(s.passed for s in evaluable) >= len(evaluable) - 1
    assert scores["NetAsym"].passed and scores["RamHist"].passed and scores["BrowserHist"].passed
