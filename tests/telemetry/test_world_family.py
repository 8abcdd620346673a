"""The family of worlds: world K is a deterministic redraw of the simulator's parameters around the
calibrated world, the calibrated world is untouched, and rows_scale multiplies rows per device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dpbench.telemetry import simulator, world
from dpbench.telemetry.__main__ import main
from dpbench.telemetry.simulator import simulate, simulated_corpus
from dpbench.telemetry.world_family import draw_parameters, in_world, parameters_of

TABLES_COMPARED = ("system_sysinfo_unique_normalized", "system_memory_utilization", "system_web_cat_pivot_duration")


def _tables(path):
    return {t: pq.read_table(path / f"{t}.parquet") for t in TABLES_COMPARED}


def test_the_calibrated_world_is_not_redrawn():
    assert parameters_of(None) == {}


def test_world_k_is_deterministic_and_differs_between_k():
    one, again, two = draw_parameters(1), draw_parameters(1), draw_parameters(2)
    assert one["OS_MIX"] == again["OS_MIX"] and one["TARGETS"] == again["TARGETS"]
    assert one["VENDOR_ZIPF"] != two["VENDOR_ZIPF"] and one["TARGETS"] != two["TARGETS"]


def test_drawn_parameters_are_plausible_redraws_of_the_calibrated_ones():
    for k in range(20):
        p = draw_parameters(k)
        for mixes in (p["OS_MIX"], p["CHASSIS_BY_SEGMENT"]):
            for mix in mixes.values():
                assert sum(mix.values()) == pytest.approx(1) and min(mix.values()) > 0
        assert sum(p["BROWSER_SETS"].values()) == pytest.approx(1)
        assert set(p["OS_MIX"]["Server Class"]) == set(world.OS_MIX["Server Class"])     # same values, new mix
        assert 0.3 <= p["SENT_RECEIVED_CORRELATION"] <= 0.95 and 0.6 <= p["DAYS_SIGMA"] <= 1.4
        targets = p["TARGETS"]
        assert set(targets["top_browser_by_country"]) == set(world.TARGETS["top_browser_by_country"])
        assert all(0 < row["avg_pkg_c0"] <= 95 for row in targets["hardware_by_chassis"].values())
        assert all(5 <= row["avg_percentage_used"] <= 95 for row in targets["ram_histogram"].values())
        ratio = [targets["battery_by_country"][c]["number_of_systems"]
                 / world.TARGETS["battery_by_country"][c]["number_of_systems"] for c in world.TARGETS["battery_by_country"]]
        assert 0.05 < min(ratio) and max(ratio) < 20 and np.std(np.log(ratio)) > 0.1   # moved, within range
        for key, v in p["VOLUMES"].items():
            assert v.rows >= v.devices >= 20 and 0.2 < v.devices / world.VOLUMES[key].devices < 5


def test_calibrated_values_are_restored_after_a_world_even_on_error():
    calibrated = world.OS_MIX, world.TARGETS, world.VOLUMES, world.DAYS_SIGMA
    with pytest.raises(RuntimeError), in_world(3, rows_scale=2):
        assert world.OS_MIX != calibrated[0] and world.WINDOW_DAYS == 2 * 1096
        raise RuntimeError
    assert (world.OS_MIX, world.TARGETS, world.VOLUMES, world.DAYS_SIGMA) == calibrated
    assert world.WINDOW_DAYS == 1096


def test_a_world_gives_other_tables_and_the_default_stays_bit_for_bit(tmp_path):
    simulate(3000, tmp_path / "before", seed=0)
    simulate(3000, tmp_path / "w5", seed=0, world=5)
    simulate(3000, tmp_path / "w5b", seed=0, world=5)
    simulate(3000, tmp_path / "after", seed=0)
    before, after, w5 = _tables(tmp_path / "before"), _tables(tmp_path / "after"), _tables(tmp_path / "w5")
    assert all(before[t].equals(after[t]) for t in TABLES_COMPARED)
    assert all(w5[t].equals(_tables(tmp_path / "w5b")[t]) for t in TABLES_COMPARED)
    assert not any(before[t].equals(w5[t]) for t in TABLES_COMPARED)


def test_rows_scale_multiplies_rows_per_device(tmp_path):
    base = simulate(4000, tmp_path / "base", seed=0)
    heavy = simulate(4000, tmp_path / "heavy", seed=0, rows_scale=10)
    for table in ("system_memory_utilization", "system_on_off_suspend_time_day", "system_web_cat_pivot_duration"):
        assert heavy.devices[table] == base.devices[table]            # the same devices report
        ratio = (heavy.rows[table] / heavy.devices[table]) / (base.rows[table] / base.devices[table])
        assert 7 < ratio < 13, (table, ratio)
    with pytest.raises(ValueError, match="rows_scale must be positive"):
        simulate(10, tmp_path / "bad", rows_scale=0)


def test_simulated_corpus_names_the_world_and_rows(tmp_path):
    path = simulated_corpus(500, 0, tmp_path, world=2, rows_scale=3)
    assert path.name == "sim_500_seed0_world2_rows3" and (path / "system_pkg_C0.parquet").exists()
    assert simulated_corpus(500, 0, tmp_path).name == "sim_500_seed0"


def test_a_killed_simulation_leaves_no_corpus_that_looks_whole(tmp_path, monkeypatch):
    """A run killed while simulating (here: interrupted after the first tables are written) leaves nothing
    under the corpus's name, so the next run simulates it again instead of reading truncated files."""
    real = simulator.simulate

    def killed(n_devices, out_dir, *args):
        real(n_devices, out_dir, *args)
        (Path(out_dir) / "system_web_cat_usage.parquet").write_bytes(b"PAR1")  # a writer cut short
        raise KeyboardInterrupt

    monkeypatch.setattr(simulator, "simulate", killed)
    with pytest.raises(KeyboardInterrupt):
        simulated_corpus(300, 0, tmp_path)
    assert list((tmp_path / "telemetry").iterdir()) == []
    monkeypatch.setattr(simulator, "simulate", real)
    path = simulated_corpus(300, 0, tmp_path)
    tables = sorted(path.glob("*.parquet"))
    assert len(tables) == 13 and all(pq.ParquetFile(table).metadata.num_rows >= 0 for table in tables)


def test_cli_simulates_a_world(tmp_path, capsys):
    main(["simulate", "--devices", "500", "--out", str(tmp_path), "--world", "4", "--rows-scale", "2"])
    assert "simulated 500 devices of world 4 (seed 0, 2x rows per device)" in capsys.readouterr().out


def test_the_run_config_takes_a_world(make_config):
    """``dataset.world=K`` is a key of the telemetry dataset config (a run on world K composes), null by default."""
    assert make_config("dataset=telemetry").dataset.world is None
    assert make_config("dataset=telemetry", "dataset.world=3").dataset.world == 3
