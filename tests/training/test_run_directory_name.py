"""Runs and searches are named by their overrides; a name longer than a file system allows (255 bytes) becomes its
start and a hash of the whole, so long override lists still run, and distinct ones keep distinct directories."""

from __future__ import annotations

import json
import sys

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from dpbench import cli
from dpbench.search.__main__ import search_name
from dpbench.training.run_directory import MAX_NAME_BYTES, directory_name, letter_spelling, public_proxy_run_name

LONG_LR = "train.lr=0.05" + "0" * 300  # 0.05, spelled with 300 more zeros


def test_a_name_that_fits_is_kept():
    assert directory_name("seed=1,train.lr=0.5") == "seed=1,train.lr=0.5"
    assert directory_name("") == "default"
    assert directory_name("x" * MAX_NAME_BYTES) == "x" * MAX_NAME_BYTES


def test_a_long_name_fits_and_stays_distinct_and_stable():
    first, second = "a=" + "é" * 200 + ",seed=1", "a=" + "é" * 200 + ",seed=2"
    names = {directory_name(first), directory_name(second)}
    assert len(names) == 2 and all(len(name.encode()) <= MAX_NAME_BYTES for name in names)
    assert directory_name(first) == directory_name(first) and directory_name(first).startswith("a=éé")


def test_a_search_with_long_overrides_gets_a_short_name():
    overrides = [f"mechanism.option_{i}=value_{i}" for i in range(30)]
    assert len(search_name(overrides).encode()) <= MAX_NAME_BYTES
    assert search_name(overrides) != search_name([*overrides[:-1], "mechanism.option_29=other"])


def test_a_public_proxy_run_is_named_by_its_search_and_seed_through_hydras_grammar():
    search = "dataset=digits,train.lr=[1, 2],x='y\"z',tune=public"  # commas, brackets and quotes survive
    encoded = letter_spelling(search)
    assert public_proxy_run_name(encoded, 0, 0) == f"public_proxy,{search}"  # the search's own seed
    assert public_proxy_run_name(encoded, 2, 0) == f"public_proxy,{search},final_seed=2"
    assert len(public_proxy_run_name(letter_spelling("x" * 300), 1, 0).encode()) <= MAX_NAME_BYTES
    assert public_proxy_run_name(letter_spelling("0"), 0, 0) == "public_proxy,0"  # digits stay a string
    # as the search passes it to a multirun: Hydra's override grammar keeps it, and each job's seed resolves it
    subdir = f"${{public_proxy_run:{encoded},${{seed}},0}}"
    (override,) = OverridesParser.create().parse_overrides([f"hydra.sweep.subdir='{subdir}'"])
    assert override.value() == subdir
    assert OmegaConf.create({"seed": 1, "subdir": subdir}).subdir == f"public_proxy,{search},final_seed=1"


def test_a_run_with_overrides_longer_than_a_file_name_runs(tmp_path, monkeypatch):
    results = tmp_path / "results"
    quiet = ("hydra/job_logging=none", "hydra/hydra_logging=none")
    monkeypatch.setattr(sys, "argv", ["dpbench", LONG_LR, f"paths.results={results}", "train.epochs=1",
                                      "progress=false", *quiet])
    cli.main()
    (row,) = [json.loads(line) for line in (results / "results.jsonl").read_text().splitlines()]
    assert row["status"] == "finished" and row["lr"] == 0.05
    (run_dir,) = (results / "runs").iterdir()
    assert len(run_dir.name.encode()) <= MAX_NAME_BYTES and (run_dir / "summary.json").exists()
