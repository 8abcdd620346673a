"""The public-proxy ``eps3_vision`` tables in docs/benchmarks.md are what their published results give: every
row of the section's tables is a row of the leaderboard that the report's own functions build from
``docs/results/eps3_vision_public_proxy/`` (accuracy mean ± std, runs, chosen hyper-parameters, ε, Δ vs
``fixed`` with its bootstrap CI and Welch's p), and every published configuration has its row. A number edited by
hand, or data that no longer matches the page, fails here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dpbench.reporting.leaderboard import compare_to_baseline, confounders, leaderboard, to_markdown
from dpbench.reporting.results_table import load_results

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "docs" / "results" / "eps3_vision_public_proxy"
PAGE = REPO / "docs" / "benchmarks.md"
SECTION = "## Tuned on a public proxy"


def table_rows(markdown: str) -> list[str]:
    """The data rows of every table in ``markdown`` (not headers or separators)."""
    return [line for line in markdown.splitlines()
            if line.startswith("| 3 |")]


def documented_rows() -> list[str]:
    text = PAGE.read_text()
    section = text[text.index(SECTION):]
    return table_rows(section[: section.index("\n## ", len(SECTION))])


def regenerated_rows() -> list[str]:
    results = load_results(PUBLISHED)
    markdown = to_markdown(leaderboard(results), compare_to_baseline(results, "fixed"), confounders(results))
    return table_rows(markdown)


def test_the_published_runs_are_public_proxy_runs_at_the_target():
    results = load_results(PUBLISHED)
    assert len(results) >= 18 and (results["tuning"] == "public proxy").all()
    assert (results["tuned_on"] != results["dataset"]).all()
    epsilon = pd.to_numeric(results["epsilon"])
    assert epsilon.between(0.99 * 3, 3).all() and (results["verdict"] == "VERIFIED").all()


def test_the_documented_tables_are_the_published_results():
    documented, regenerated = documented_rows(), regenerated_rows()
    assert documented, "no table rows found in the public-proxy section of docs/benchmarks.md"
    assert sorted(documented) == sorted(regenerated)
