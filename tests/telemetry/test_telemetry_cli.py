"""The command line: simulate, query, score; missing inputs give clear errors."""

from __future__ import annotations

import pytest

from dpbench.telemetry.__main__ import main


def test_query_then_score_results(small_corpus, tmp_path, capsys):
    main(["query", "--tables", str(small_corpus[0]), "--out", str(tmp_path / "answers"),
          "--queries", "BrowserHist", "BrowserRank"])
    assert (tmp_path / "answers" / "popular_browsers_by_count_usage_percentage.csv").exists()
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "popular_browsers_by_count_usage_percentage.csv").write_text(
        "browser,percent_systems,percent_instances,percent_duration\n"
        "edge,55.16,8.91,8.88\nchrome,82.05,80.3,82.89\nfirefox,18.36,10.79,8.23\n")
    main(["score", "--results", str(tmp_path / "answers"), "--truth", str(truth), "--out", str(tmp_path / "s.csv"),
          "--queries", "BrowserHist", "BrowserRank"])
    out = capsys.readouterr().out
    assert "1 of 1 evaluable queries pass" in out
    assert "no reference answer" in out


def test_simulate_writes_tables(tmp_path, capsys):
    main(["simulate", "--devices", "500", "--out", str(tmp_path)])
    assert len(list(tmp_path.glob("*.parquet"))) == 13
    assert "simulated 500 devices" in capsys.readouterr().out


def test_missing_truth_dir_is_a_clear_error(small_corpus, tmp_path):
    with pytest.raises(SystemExit, match="ground-truth directory .*nowhere.* does not exist; pass --truth"):
        main(["score", "--tables", str(small_corpus[0]), "--truth", str(tmp_path / "nowhere")])


def test_missing_tables_dir_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="is missing from"):
        main(["query", "--tables", str(tmp_path), "--out", str(tmp_path / "o")])


def test_score_against_a_corpus_shows_value_only_counts_and_margins(small_corpus, capsys):
    tables = str(small_corpus[0])
    main(["score", "--tables", tables, "--reference-tables", tables, "--queries", "BrowserHist", "BrowserRank"])
    out = capsys.readouterr().out
    # the corpus against itself: every metric passes; the baseline (equal shares, chrome everywhere) passes
    # BrowserRank only, and one half against the other passes both
    assert "2 of 2 evaluable queries pass, mean score 1.000; on values only 2 of 2, mean 1.000" in out
    assert ("margin over keys_and_counts (1 of 2 evaluable queries pass, mean score 0.500; on values only 1 of 2, "
            "mean 0.500): +1 queries, +0.500 mean score; on values only +1 queries, +0.500") in out
    assert "margin over halves (2 of 2 evaluable queries pass, mean score 1.000;" in out
