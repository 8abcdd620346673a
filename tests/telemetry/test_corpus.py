"""A user's tables are read as they come: unread columns ignored, read columns cast when no value changes (one
warning each), every problem of every table in one error, optional tables allowed to be missing.

Each test damages a copy of a tiny simulated corpus the way a real corpus differs from the simulator's output
and compares what the readers (the queries, the wide table) see with what they see on the undamaged corpus."""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dpbench.telemetry.benchmark_queries import QUERIES
from dpbench.telemetry.corpus import CorpusWarning, open_corpus
from dpbench.telemetry.query_runner import connect, run_queries
from dpbench.telemetry.schema import TABLES, SchemaError
from dpbench.telemetry.simulator import simulate
from dpbench.telemetry.wide_table import WIDE_LAYOUT, build_wide_table

SYSINFO, BATTERY, PKG_POWER = "system_sysinfo_unique_normalized", "system_batt_dc_events", "system_hw_pkg_power"
pytestmark = pytest.mark.filterwarnings("ignore::dpbench.telemetry.corpus.CorpusWarning")  # counted where expected
PERCENT_COLUMNS = tuple(f"{s}_power_{o}_battery_percent" for o in ("on", "off") for s in ("min", "avg", "max"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """2,000 simulated devices: every table has rows."""
    out = tmp_path_factory.mktemp("sim2k")
    simulate(2_000, out, seed=0)
    return out


@pytest.fixture(scope="module")
def reference(tiny):
    """What the readers see on the undamaged corpus."""
    return run_queries(tiny), build_wide_table(tiny)


def _damaged(tiny: Path, tmp_path: Path, changes: dict[str, Callable[[pa.Table], pa.Table]]) -> Path:
    corpus = tmp_path / "tables"
    shutil.copytree(tiny, corpus)
    for table, change in changes.items():
        path = corpus / f"{table}.parquet"
        pq.write_table(change(pq.read_table(path)), path)
    return corpus


def _retype(**columns: Callable[[pa.Array], pa.Array]) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        for name, new in columns.items():
            table = table.set_column(table.schema.get_field_index(name), name, new(table[name].combine_chunks()))
        return table
    return change


def _to(dtype: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    return lambda array: pc.cast(array, dtype)


def _replace_first(value, dtype: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    """The column as ``dtype`` with its first value replaced by ``value``."""
    def change(array: pa.Array) -> pa.Array:
        values = pc.cast(array, dtype).to_pylist()
        return pa.array([value, *values[1:]], dtype)
    return change


def _open_with_warnings(corpus: Path, tables: list[str] | None = None) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_corpus(corpus, tables)
    return [str(w.message) for w in caught if issubclass(w.category, CorpusWarning)]


def _assert_same_readings(corpus: Path, reference) -> None:
    answers, wide = reference
    for name, answer in run_queries(corpus).items():
        pd.testing.assert_frame_equal(answer, answers[name], obj=name)
    damaged_wide = build_wide_table(corpus)
    np.testing.assert_array_equal(damaged_wide.guids, wide.guids)
    np.testing.assert_array_equal(damaged_wide.features, wide.features)


def test_simulated_corpus_has_all_tables_and_is_read_without_warnings(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorpusWarning)
        sources = open_corpus(tiny)
    assert set(sources) == set(TABLES)
    for name, source in sources.items():
        assert source.num_rows == pq.read_metadata(tiny / f"{name}.parquet").num_rows > 0
    assert not _open_with_warnings(tiny)


def test_unread_columns_are_ignored_whatever_their_type(tiny, tmp_path, reference):
    """The two columns that stopped a real corpus (pkg power instance as text, battery percents as doubles with
    fractions), plus unread columns of other types and unread columns left out."""
    fractional = {c: (lambda a: pc.add(pc.cast(a, pa.float64()), 0.63)) for c in PERCENT_COLUMNS}
    corpus = _damaged(tiny, tmp_path, {
        PKG_POWER: _retype(instance=lambda a: pc.binary_join_element_wise("pkg", pc.cast(a, pa.string()), "")),
        BATTERY: _retype(**fractional),
        "system_web_cat_usage": _retype(page_load_count=_to(pa.string()), parent_category=_to(pa.binary())),
        "system_network_consumption": lambda t: t.drop_columns(["min_bytes_sec", "max_bytes_sec"]),
        SYSINFO: lambda t: t.drop_columns(["cpu_family"]),
    })
    assert pq.read_table(corpus / f"{BATTERY}.parquet")["avg_power_on_battery_percent"][0].as_py() % 1 == \
        pytest.approx(0.63)
    assert _open_with_warnings(corpus) == []
    _assert_same_readings(corpus, reference)


def test_lossless_forms_of_read_columns_are_cast_with_one_warning_per_column(tiny, tmp_path, reference):
    casts = {
        PKG_POWER: {"nrs": pa.float64(), "mean": pa.string()},                 # 3.0 -> 3; '1.685...' -> 1.685...
        BATTERY: {"num_power_ons": pa.string(), "duration_mins": pa.decimal128(12, 3)},  # decimal: silent
        "system_memory_utilization": {"sysinfo_ram": pa.decimal128(22, 2), "dt": pa.timestamp("us")},
        "system_web_cat_pivot_duration": {"dt": pa.string()},                  # '2020-06-10'
        SYSINFO: {"#ofcores": pa.int32()},                                     # 4 -> '4'
        "system_cpu_metadata": {"cpugen": pa.large_string()},                  # silent
    }
    corpus = _damaged(tiny, tmp_path, {t: _retype(**{c: _to(d) for c, d in cols.items()}) for t, cols in casts.items()})
    messages = _open_with_warnings(corpus)
    warned = {(t, c) for t, cols in casts.items() for c in cols} - {(BATTERY, "duration_mins"),
                                                                      ("system_cpu_metadata", "cpugen")}
    assert len(messages) == len(warned)
    for table, column in warned:
        (message,) = [m for m in messages if m.startswith(f"{table}.{column} is ")]
        assert str(casts[table][column]) in message
    _assert_same_readings(corpus, reference)


def test_read_column_of_nulls_only_is_read_as_nulls_with_a_warning(tiny, tmp_path):
    corpus = _damaged(tiny, tmp_path, {"system_cpu_metadata": _retype(marketcodename=lambda a: pa.nulls(len(a)))})
    assert pq.read_schema(corpus / "system_cpu_metadata.parquet").field("marketcodename").type == pa.null()
    (message,) = _open_with_warnings(corpus)
    assert message.startswith("system_cpu_metadata.marketcodename is stored as null and read as string")
    con = connect(corpus, (QUERIES["SleepPivot"],))
    rows, named, dtype = con.execute("SELECT count(*), count(marketcodename), any_value(typeof(marketcodename)) "
                                     "FROM system_cpu_metadata").fetchone()
    con.close()
    assert (rows, named, dtype) == (2_000, 0, "VARCHAR")


def test_lossy_values_in_read_columns_are_refused_all_in_one_error(tiny, tmp_path):
    corpus = _damaged(tiny, tmp_path, {
        PKG_POWER: _retype(nrs=_replace_first(3.5, pa.float64())),
        BATTERY: _retype(num_power_ons=_replace_first("n/a", pa.string())),
        "system_network_consumption": _retype(dt=lambda a: pc.add(pc.cast(a, pa.timestamp("ms")),
                                                                  pa.scalar(13 * 3600_000, pa.duration("ms")))),
        SYSINFO: _retype(ram=_replace_first("lots", pa.string())),
        "system_memory_utilization": _retype(avg_percentage_used=lambda a: pc.greater(a, 50.0)),
    })
    with pytest.raises(SchemaError) as raised:
        open_corpus(corpus)
    message = str(raised.value)
    assert message.startswith("5 problems in the tables of")
    expected = [(PKG_POWER, "nrs", "double", "int64", "'3.5'"),
                (BATTERY, "num_power_ons", "string", "int64", "'n/a'"),
                ("system_network_consumption", "dt", "timestamp[ms]", "date32", "13:00:00"),
                (SYSINFO, "ram", "string", "double", "'lots'"),
                ("system_memory_utilization", "avg_percentage_used", "bool", "double", "no cast")]
    lines = message.splitlines()[1:]
    assert len(lines) == 5
    for table, column, found, target, example in expected:
        (line,) = [x for x in lines if x.startswith(f"- {table}: column {column!r}")]
        assert f"type {found}" in line and target in line and example in line, line
    assert "1 of" in next(x for x in lines if "'n/a'" in x)  # how many values would change
    with pytest.raises(SchemaError, match="5 problems"):
        run_queries(corpus)


def test_missing_optional_table_is_an_empty_block_with_a_warning(tiny, tmp_path, reference):
    corpus = _damaged(tiny, tmp_path, {})
    (corpus / f"{BATTERY}.parquet").unlink()
    messages = _open_with_warnings(corpus)
    assert len(messages) == 1
    assert f"table {BATTERY} is missing" in messages[0] and "BatteryGeo, BatteryDemo" in messages[0]
    _assert_battery_is_empty(corpus, reference)


def test_empty_optional_table_is_an_empty_block_with_a_warning(tiny, tmp_path, reference):
    corpus = _damaged(tiny, tmp_path, {BATTERY: lambda t: t.slice(0, 0)})
    (message,) = _open_with_warnings(corpus)
    assert f"table {BATTERY}" in message and "has no rows" in message
    _assert_battery_is_empty(corpus, reference)
    assert _open_with_warnings(corpus) == [message]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorpusWarning)
        open_corpus(corpus, allow_empty=True)  # synthetic output: an empty table is no news


def _assert_battery_is_empty(corpus: Path, reference) -> None:
    answers, wide = reference
    results = run_queries(corpus)
    for name in ("BatteryGeo", "BatteryDemo"):
        assert results[name].empty and list(results[name].columns) == list(answers[name].columns)
    for name in ("PowerGeo", "RamHist", "NetAsym"):
        pd.testing.assert_frame_equal(results[name], answers[name])
    damaged = build_wide_table(corpus).features
    battery = [i for i, n in enumerate(WIDE_LAYOUT.names) if n.startswith("battery.")]
    others = [i for i in range(WIDE_LAYOUT.width) if i not in battery]
    assert wide.features[:, battery].any() and not damaged[:, battery].any()
    np.testing.assert_array_equal(damaged[:, others], wide.features[:, others])


def test_missing_required_table_or_read_column_is_an_error_naming_it(tiny, tmp_path):
    corpus = _damaged(tiny, tmp_path, {"system_cpu_metadata": lambda t: t.drop_columns(["cpugen"]),
                                       PKG_POWER: lambda t: t.drop_columns(["nrs", "instance"])})
    (corpus / f"{SYSINFO}.parquet").unlink()
    with pytest.raises(SchemaError) as raised:
        open_corpus(corpus)
    lines = str(raised.value).splitlines()
    assert lines[0].startswith("3 problems") and len(lines) == 4
    assert re.search(rf"table {SYSINFO} is missing .*required", lines[1])
    assert "system_cpu_metadata: column 'cpugen' is missing (read by BatteryDemo, SleepPivot, wide table: devices)" \
        in str(raised.value)
    assert f"{PKG_POWER}: column 'nrs' is missing" in str(raised.value) and "instance" not in str(raised.value)
    with pytest.raises(SchemaError, match=f"table {SYSINFO} is missing"):
        run_queries(corpus, (QUERIES["RamHist"], QUERIES["PowerGeo"]))


def test_empty_required_table_is_an_error(tiny, tmp_path):
    corpus = _damaged(tiny, tmp_path, {SYSINFO: lambda t: t.slice(0, 0)})
    with pytest.raises(SchemaError, match=f"table {SYSINFO} at .* is empty; it lists the devices"):
        open_corpus(corpus)
    with pytest.raises(SchemaError, match="is empty"):
        open_corpus(corpus, allow_empty=True)  # synthetic output, too, has at least one device


def test_folder_of_parts_is_read_with_nested_parts(tiny, tmp_path, reference):
    corpus = _damaged(tiny, tmp_path, {})
    table = pq.read_table(corpus / f"{BATTERY}.parquet")
    (corpus / f"{BATTERY}.parquet").unlink()
    parts = corpus / BATTERY / "year=2021"
    parts.mkdir(parents=True)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), corpus / BATTERY / "part-0.parquet")
    pq.write_table(table.slice(half), parts / "part-1.parquet")
    (corpus / BATTERY / "_SUCCESS").write_text("")
    assert open_corpus(corpus)[BATTERY].num_rows == table.num_rows
    _assert_same_readings(corpus, reference)


def test_unreadable_file_is_named(tiny, tmp_path):
    corpus = _damaged(tiny, tmp_path, {})
    (corpus / f"{BATTERY}.parquet").write_text("not parquet")
    with pytest.raises(SchemaError, match=f"table {BATTERY}: .* is not readable parquet"):
        open_corpus(corpus)


MEMORY, C0, USAGE, NETWORK = ("system_memory_utilization", "system_pkg_C0", "system_web_cat_usage",
                              "system_network_consumption")


def _at_every(step: int, value, dtype: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    """The column as ``dtype`` with every ``step``-th value (from the first) replaced by ``value``."""
    def change(array: pa.Array) -> pa.Array:
        values = pc.cast(array, dtype).to_pylist()
        return pa.array([value if i % step == 0 else v for i, v in enumerate(values)], dtype)
    return change


def _readings(corpus: Path):
    return run_queries(corpus), build_wide_table(corpus)


def test_nan_and_infinite_floats_are_read_as_missing_with_a_count(tiny, tmp_path):
    """The corpus with NaN and infinities reads exactly as the same corpus with nulls in their place, including
    an integer column stored as doubles (pandas writes a missing integer as NaN)."""
    def damage(value, nrs_value, where: Path) -> Path:
        return _damaged(tiny, where, {
            MEMORY: _retype(avg_percentage_used=_at_every(7, value, pa.float64())),
            C0: _retype(avg_pkg_c0=_at_every(11, -value if value is not None else None, pa.float64())),
            PKG_POWER: _retype(nrs=_at_every(13, nrs_value, pa.float64() if nrs_value is not None else pa.int64())),
        })
    nulls = damage(None, None, tmp_path / "nulls")
    for value, nrs_value in ((float("nan"), float("nan")), (float("inf"), float("-inf"))):
        corpus = damage(value, nrs_value, tmp_path / str(value))
        messages = _open_with_warnings(corpus)
        expected = {f"{t}.{c}: {-(-pq.read_metadata(corpus / f'{t}.parquet').num_rows // step):,d} NaN or infinite "
                    "values read as missing" for t, c, step in ((MEMORY, "avg_percentage_used", 7),
                                                                 (C0, "avg_pkg_c0", 11), (PKG_POWER, "nrs", 13))}
        assert expected <= set(messages), messages
        _assert_same_readings(corpus, _readings(nulls))
        assert np.isfinite(build_wide_table(corpus).features).all()


def test_categories_match_up_to_case_and_surrounding_spaces(tiny, tmp_path, reference):
    respell = {
        SYSINFO: {"chassistype": pc.utf8_lower, "os": pc.utf8_upper,
                  "persona": lambda a: pc.binary_join_element_wise(" ", a, "")},
        "system_cpu_metadata": {"marketcodename": lambda a: pc.binary_join_element_wise(a, " ", "")},
        NETWORK: {"input_desc": pc.utf8_lower},
        USAGE: {"browser": lambda a: pc.binary_join_element_wise(" ", pc.utf8_capitalize(a), "")},
    }
    corpus = _damaged(tiny, tmp_path, {t: _retype(**columns) for t, columns in respell.items()})
    assert pq.read_table(corpus / f"{USAGE}.parquet")["browser"][0].as_py().startswith(" C")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorpusWarning)
        wide = build_wide_table(corpus)
    np.testing.assert_array_equal(wide.features, reference[1].features)


def test_a_category_spelled_in_another_vocabulary_is_other_with_a_warning(tiny, tmp_path, reference):
    corpus = _damaged(tiny, tmp_path, {SYSINFO: _retype(chassistype=lambda a: pc.binary_join_element_wise(
        "type ", pc.cast(pc.utf8_length(a), pa.string()), ""))})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wide = build_wide_table(corpus)
    (message,) = [str(w.message) for w in caught if "match no listed value" in str(w.message)]
    assert message.startswith("wide table: 2,000 of 2,000 values of chassis (sysinfo chassistype)")
    assert "'type 8'" in message and "Notebook, Desktop" in message
    other = WIDE_LAYOUT.names.index("chassis=Other")
    assert wide.features[:, other].all() and not reference[1].features[:, other].all()


def _split(corpus: Path, table: str, *parts: Callable[[pa.Table], pa.Table]) -> Path:
    """``table`` rewritten as a folder of parts, the i-th part being ``parts[i]`` of the i-th slice of its rows."""
    whole = pq.read_table(corpus / f"{table}.parquet")
    (corpus / f"{table}.parquet").unlink()
    (corpus / table).mkdir()
    size = -(-whole.num_rows // len(parts))
    for i, change in enumerate(parts):
        pq.write_table(change(whole.slice(i * size, size)), corpus / table / f"part-{i}.parquet")
    return corpus / table


def test_every_part_of_a_folder_is_checked(tiny, tmp_path):
    corpus = _damaged(tiny, tmp_path, {})
    _split(corpus, PKG_POWER, lambda t: t, _retype(nrs=lambda a: pc.add(pc.cast(a, pa.float64()), 0.4)))
    _split(corpus, BATTERY, lambda t: t, lambda t: t.drop_columns(["num_power_ons"]))
    with pytest.raises(SchemaError) as raised:
        open_corpus(corpus)
    lines = str(raised.value).splitlines()
    assert lines[0].startswith("2 problems") and len(lines) == 3
    assert lines[1].startswith(f"- {PKG_POWER}: column 'nrs' has type int64 in {PKG_POWER}/part-0.parquet but double "
                               f"in {PKG_POWER}/part-1.parquet;") and lines[1].endswith("write it as int64 in every part")
    assert lines[2].startswith(f"- {BATTERY}: column 'num_power_ons' is missing from 1 of 2 parts (e.g. "
                               f"{BATTERY}/part-1.parquet)") and lines[2].endswith("to every part")


def test_parts_in_other_orders_with_extra_columns_or_all_null_columns_read_as_one(tiny, tmp_path, reference):
    """An empty part written by pandas (every column of Arrow type null) sorted first, a part with its columns
    reversed and an unread extra column, a part of narrower integers."""
    corpus = _damaged(tiny, tmp_path, {})
    reversed_extra = lambda t: t.select(t.column_names[::-1]).append_column("note", pa.array(["x"] * t.num_rows))
    folder = _split(corpus, BATTERY, reversed_extra, _retype(num_power_ons=_to(pa.int32())))
    pd.DataFrame({n: pd.Series([], dtype=object) for n in TABLES[BATTERY].column_names}).to_parquet(
        folder / "empty.parquet")
    assert sorted(folder.iterdir())[0].name == "empty.parquet"
    assert pq.read_schema(folder / "empty.parquet").field("guid").type == pa.null()
    assert _open_with_warnings(corpus) == []
    _assert_same_readings(corpus, reference)


@pytest.mark.parametrize("required", [False, True])
def test_a_folder_without_parquet_files_is_a_missing_table(tiny, tmp_path, required):
    table = SYSINFO if required else BATTERY
    corpus = _damaged(tiny, tmp_path, {})
    (corpus / f"{table}.parquet").unlink()
    (corpus / table).mkdir()
    (corpus / table / "_SUCCESS").write_text("")
    reason = f"the folder {table}/ holds no .parquet files"
    if required:
        with pytest.raises(SchemaError, match=f"1 problem in .*\n- table {table} is missing .*; {reason}\\); it is "
                                              "required"):
            open_corpus(corpus)
    else:
        (message,) = _open_with_warnings(corpus)
        assert message.startswith(f"table {table} is missing") and reason in message
        assert open_corpus(corpus)[table].num_rows == 0


def test_a_table_under_a_near_name_is_read_or_named(tiny, tmp_path, reference):
    corpus = _damaged(tiny, tmp_path, {})
    (corpus / f"{C0}.parquet").rename(corpus / f"{C0.lower()}.parquet")
    (corpus / f"{BATTERY}.parquet").rename(corpus / f"{BATTERY}.snappy.parquet")
    (corpus / f"{PKG_POWER}.parquet").rename(corpus / f"{PKG_POWER}.parq")
    assert _open_with_warnings(corpus) == [f"table {C0} is read from {C0.lower()}.parquet (its name differs in case)"]
    _assert_same_readings(corpus, reference)
    pq.write_table(pq.read_table(corpus / f"{C0.lower()}.parquet"), corpus / f"{C0.upper()}.parquet")
    pq.read_table(corpus / f"{SYSINFO}.parquet").to_pandas().to_csv(corpus / f"{SYSINFO}.csv", index=False)
    (corpus / f"{SYSINFO}.parquet").unlink()
    with pytest.raises(SchemaError) as raised:
        open_corpus(corpus)
    assert (f"{SYSINFO}.csv is there, but only parquet is read: write the table as {SYSINFO}.parquet"
            in str(raised.value))
    messages = _open_with_warnings(corpus, [C0])
    assert f"{C0.upper()}.parquet, {C0.lower()}.parquet differ from it in case only" in messages[0]


def test_hive_partition_keys_are_columns(tiny, tmp_path, reference):
    """Spark's daily layout: ``T/dt=2020-01-27/part-0.parquet`` with dt in the folder names only, read as text
    that reads as a date."""
    corpus = _damaged(tiny, tmp_path, {})
    table = pq.read_table(corpus / f"{BATTERY}.parquet")
    (corpus / f"{BATTERY}.parquet").unlink()
    pq.write_to_dataset(table, corpus / BATTERY, partition_cols=["dt"])
    assert "dt" not in pq.read_schema(next((corpus / BATTERY).glob("dt=*/*.parquet"))).names
    assert _open_with_warnings(corpus) == [f"{BATTERY}.dt is stored as string and read as date32[day] "
                                           "(the cast changes no value)"]
    answers, wide = reference
    for name, answer in run_queries(corpus).items():
        pd.testing.assert_frame_equal(answer, answers[name], obj=name)  # floats within 1e-5: rows come in other order
    np.testing.assert_allclose(build_wide_table(corpus).features, wide.features, rtol=1e-6, atol=1e-6)


def test_rows_without_a_guid_are_their_own_problem(tiny, tmp_path):
    corpus = _damaged(tiny, tmp_path, {SYSINFO: _retype(guid=_at_every(500, None, pa.string()))})
    with pytest.raises(SchemaError) as raised:
        build_wide_table(corpus)
    assert str(raised.value) == (f"4 rows of {SYSINFO} have no guid; every device needs one: fill in the guid or "
                                 "remove the rows")
