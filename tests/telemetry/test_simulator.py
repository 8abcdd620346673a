"""The simulator: deterministic by seed, table grains, coverage, overlaps and internal consistency."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from dpbench.telemetry import world
from dpbench.telemetry.schema import TABLES
from dpbench.telemetry.simulator import simulate


def _sql(corpus, query: str):
    con = duckdb.connect()
    for path in corpus.glob("*.parquet"):
        con.execute(f"CREATE VIEW \"{path.stem}\" AS SELECT * FROM read_parquet('{path}')")
    return con.execute(query).fetchall()


@pytest.mark.parametrize("table", ["system_sysinfo_unique_normalized", "system_web_cat_usage", "system_pkg_C0"])
def test_same_seed_same_tables_other_seed_differs(tmp_path, table):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        simulate(3_000, tmp_path / name, seed=seed)
    a, b, c = (pq.read_table(tmp_path / name / f"{table}.parquet") for name in "abc")
    assert a.equals(b)
    assert not a.equals(c)


def test_device_counts_scale_with_population(small_corpus):
    _, report = small_corpus
    scale = report.n_devices / world.REFERENCE_DEVICES
    for table, volume in world.VOLUMES.items():
        expected = volume.devices * scale
        assert abs(report.devices[table] - expected) <= 4 * np.sqrt(expected) + 2, table


def test_rows_per_device_match_spec(small_corpus):
    _, report = small_corpus
    for table in ("system_network_consumption", "system_memory_utilization", "system_batt_dc_events",
                  "system_on_off_suspend_time_day", "system_web_cat_usage", "system_web_cat_pivot_duration"):
        ratio = report.rows[table] / report.devices[table]
        assert ratio == pytest.approx(world.VOLUMES[table].rows_per_device, rel=0.2), table


@pytest.mark.parametrize("table", TABLES)
def test_rows_are_unique_at_the_table_grain(small_corpus, table):
    corpus, _ = small_corpus
    grain = TABLES[table].grain
    (duplicates,) = _sql(corpus, f'SELECT COUNT(*) - COUNT(DISTINCT ({grain})) FROM "{table}"')[0]
    assert duplicates == 0


def test_every_table_device_is_a_known_device(small_corpus):
    corpus, _ = small_corpus
    (orphans,) = _sql(corpus, """
        SELECT COUNT(*) FROM (SELECT DISTINCT guid FROM system_memory_utilization
                              UNION SELECT DISTINCT guid FROM system_web_cat_usage) t
        ANTI JOIN system_sysinfo_unique_normalized s USING (guid)""")[0]
    assert orphans == 0


@pytest.mark.slow
def test_hardware_tables_overlap_in_a_small_core(tmp_path):
    # 104 of 1M devices are in all four tables, 8,943 in C0: at 100k devices about 10 and 894.
    simulate(100_000, tmp_path, seed=3)
    (core,) = _sql(tmp_path, """
        SELECT COUNT(*) FROM (SELECT DISTINCT guid FROM system_psys_rap_watts) a
        JOIN (SELECT DISTINCT guid FROM system_pkg_C0) b USING (guid)
        JOIN (SELECT DISTINCT guid FROM system_pkg_avg_freq_mhz) c USING (guid)
        JOIN (SELECT DISTINCT guid FROM system_pkg_temp_centigrade) d USING (guid)""")[0]
    (c0,) = _sql(tmp_path, "SELECT COUNT(DISTINCT guid) FROM system_pkg_C0")[0]
    assert 5 <= core <= 16
    assert c0 == pytest.approx(894, abs=30)


def test_pivot_is_the_usage_summed_by_day_and_category(small_corpus):
    corpus, _ = small_corpus
    (usage_total, pivot_total, usage_days, pivot_rows, photo_usage, photo_pivot) = _sql(corpus, """
        SELECT
          (SELECT SUM(duration_ms) FROM system_web_cat_usage),
          (SELECT SUM(unclassified + private + search + entertainment_video_streaming + mail + news + shopping
                      + social_social_network + social_communication + social_communication_live + education
                      + entertainment_music_audio_streaming + entertainment_other + finance + games_other
                      + games_video_games + productivity_crm + productivity_other + productivity_presentations
                      + productivity_programming + productivity_project_management + productivity_spreadsheets
                      + productivity_word_processing + recreation_travel + reference
                      + content_creation_photo_edit_creation + content_creation_video_audio_edit_creation
                      + content_creation_web_design_development) FROM system_web_cat_pivot_duration),
          (SELECT COUNT(DISTINCT (guid, dt)) FROM system_web_cat_usage),
          (SELECT COUNT(*) FROM system_web_cat_pivot_duration),
          (SELECT SUM(duration_ms) FROM system_web_cat_usage
            WHERE parent_category = 'content creation' AND sub_category = 'photo edit/creation'),
          (SELECT SUM(content_creation_photo_edit_creation) FROM system_web_cat_pivot_duration)""")[0]
    assert usage_total == pivot_total
    assert usage_days == pivot_rows
    assert photo_usage == photo_pivot


def test_power_states_add_up_to_the_accounted_day(small_corpus):
    corpus, _ = small_corpus
    (mean_total, max_total) = _sql(corpus, """
        SELECT AVG(on_time + off_time + mods_time + sleep_time), MAX(on_time + off_time + mods_time + sleep_time)
        FROM system_on_off_suspend_time_day""")[0]
    assert 83_000 < mean_total < 86_000
    assert max_total <= 86_400


def test_memory_columns_are_consistent(small_corpus):
    corpus, _ = small_corpus
    (bad,) = _sql(corpus, """
        SELECT COUNT(*) FROM system_memory_utilization m JOIN system_sysinfo_unique_normalized s USING (guid)
        WHERE m.sysinfo_ram <> s.ram * 1024 OR abs(m.avg_free_ram + m.utilized_ram - m.sysinfo_ram) > 1e-6
           OR m.avg_percentage_used <> round(m.utilized_ram * 100 / m.sysinfo_ram)""")[0]
    assert bad == 0


def test_rejects_empty_population(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        simulate(0, tmp_path)
