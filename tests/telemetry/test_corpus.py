"""The reader validates a directory of tables and says clearly what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpbench.telemetry.corpus import load_tables, open_corpus
from dpbench.telemetry.query_runner import run_queries
from dpbench.telemetry.schema import TABLES, SchemaError
from dpbench.telemetry.workload import QUERIES


def _copy(corpus: Path, tmp_path: Path) -> Path:
    target = tmp_path / "tables"
    shutil.copytree(corpus, target)
    return target


def test_simulated_corpus_has_all_tables_with_schema_columns(small_corpus):
    corpus, report = small_corpus
    sources = open_corpus(corpus)
    assert set(sources) == set(TABLES)
    for name, source in sources.items():
        assert source.num_rows == report.rows[name]
    tables = load_tables(corpus, ["system_pkg_C0"])
    assert tables["system_pkg_C0"].column_names == TABLES["system_pkg_C0"].column_names


def test_missing_table_is_named(small_corpus, tmp_path):
    corpus = _copy(small_corpus[0], tmp_path)
    (corpus / "system_batt_dc_events.parquet").unlink()
    with pytest.raises(SchemaError, match="system_batt_dc_events is missing"):
        open_corpus(corpus)
    with pytest.raises(SchemaError, match="system_batt_dc_events is missing"):
        run_queries(corpus, (QUERIES["BatteryGeo"],))


def test_wrong_column_type_names_table_column_and_fix(small_corpus, tmp_path):
    corpus = _copy(small_corpus[0], tmp_path)
    path = corpus / "system_hw_pkg_power.parquet"
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("mean"), "mean", table["mean"].cast(pa.string()))
    pq.write_table(table, path)
    with pytest.raises(SchemaError, match=r"system_hw_pkg_power: column 'mean' has type string.*cast it to double"):
        open_corpus(corpus)


def test_missing_column_is_named(small_corpus, tmp_path):
    corpus = _copy(small_corpus[0], tmp_path)
    path = corpus / "system_cpu_metadata.parquet"
    pq.write_table(pq.read_table(path).drop(["cpugen"]), path)
    with pytest.raises(SchemaError, match="system_cpu_metadata: column 'cpugen' is missing"):
        open_corpus(corpus)


def test_empty_table_is_rejected(small_corpus, tmp_path):
    corpus = _copy(small_corpus[0], tmp_path)
    path = corpus / "system_psys_rap_watts.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    with pytest.raises(SchemaError, match="system_psys_rap_watts .* is empty"):
        open_corpus(corpus)
    with pytest.raises(SchemaError, match="system_psys_rap_watts .* is empty"):
        run_queries(corpus, (QUERIES["ChassisAgg"],))
    (answer,) = run_queries(corpus, (QUERIES["ChassisAgg"],), allow_empty=True).values()  # synthetic output
    assert answer.empty and "number_of_systems" in answer.columns


def test_folder_of_parts_and_compatible_types_are_accepted(small_corpus, tmp_path):
    corpus = _copy(small_corpus[0], tmp_path)
    table = pq.read_table(corpus / "system_batt_dc_events.parquet")
    (corpus / "system_batt_dc_events.parquet").unlink()
    parts = corpus / "system_batt_dc_events"
    parts.mkdir()
    table = table.set_column(1, "dt", table["dt"].cast(pa.timestamp("us")))
    table = table.set_column(3, "num_power_ons", table["num_power_ons"].cast(pa.int32()))
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), parts / "part-0.parquet")
    pq.write_table(table.slice(half), parts / "part-1.parquet")
    assert open_corpus(corpus)["system_batt_dc_events"].num_rows == table.num_rows
    assert len(run_queries(corpus, (QUERIES["BatteryGeo"],))["BatteryGeo"].columns) == 4
