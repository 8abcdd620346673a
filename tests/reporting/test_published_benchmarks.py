"""The tuned ``eps3_vision`` table in docs/benchmarks.md is what its published results give: every row's tuned
pipeline accuracy (mean ± std over searches), number of searches, Δ vs tuned ``fixed`` with its bootstrap CI and
Welch's p are recomputed from ``docs/results/eps3_vision_tuned/`` (written by ``python -m dpbench.report RESULTS
--publish DIR``) by the report's own functions, and the table has a row for every published pipeline. A number
edited by hand, or data that no longer matches the table, fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from dpbench.reporting.leaderboard import comparison_cells, percent_cell
from dpbench.reporting.results_table import load_results
from dpbench.reporting.tuned_pipelines import GROUP, compare_pipelines, pipelines

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "docs" / "results" / "eps3_vision_tuned"
PAGE = REPO / "docs" / "benchmarks.md"
SECTION = "## Every built-in tuned by a private search"
ROW = re.compile(r"^\| (\w+) \| (\w+) \| [^|]+ \| ([^|]+) \| (\d+) \| ([^|]+) \| ([^|]+) \|$")


def documented_rows() -> dict[tuple[str, str], tuple[str, ...]]:
    """(dataset, mechanism) -> (tuned accuracy, searches, Δ (CI), Welch p) cells of the page's tuned table."""
    text = PAGE.read_text()
    section = text[text.index(SECTION):]
    section = section[: section.index("\n## ", len(SECTION))]
    rows = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match and match.group(1) != "dataset":
            dataset, mechanism, *cells = (cell.strip() for cell in match.groups())
            rows[(dataset, mechanism)] = tuple(cells)
    return rows


@pytest.fixture(scope="module")
def regenerated() -> dict[tuple[str, str], tuple[str, ...]]:
    results = load_results(PUBLISHED)
    table, comparisons = pipelines(results), compare_pipelines(results, "fixed")
    rows = {}
    for _, row in table.iterrows():
        delta, p_value = comparison_cells(comparisons, row, GROUP, "baseline_pipeline")
        accuracy = f"{percent_cell(row['accuracy_mean'])} ± {percent_cell(row['accuracy_std'])}"
        rows[(row["dataset"].removesuffix("_scattering"), row["mechanism"])] = (
            accuracy, str(row["n_searches"]), delta, p_value)
    return rows


def test_the_published_results_hold_every_search_of_the_table(regenerated):
    results = load_results(PUBLISHED)
    assert len(regenerated) == 21  # 7 mechanisms (the six built-ins and adaptive_rescaled) x 3 datasets
    assert (results["tuning"] == "private search").all()
    epsilon = pd.to_numeric(results["epsilon"])
    assert epsilon.between(0.99 * 3, 3).all() and (results["verdict"] == "VERIFIED").all()


def test_the_documented_table_is_the_published_results(regenerated):
    documented = documented_rows()
    assert set(documented) == set(regenerated)
    mismatches = {key: (documented[key], regenerated[key]) for key in regenerated
                  if documented[key] != regenerated[key]}
    assert not mismatches, f"docs/benchmarks.md differs from the published results: {mismatches}"
