"""The telemetry workload: a calibrated simulator of the DCA reporting tables and the
analysts' benchmark queries, run by DuckDB and scored against the published answers.

    python -m dpbench.telemetry simulate --devices 1000000 --out sim/
    python -m dpbench.telemetry query --tables sim/ --out answers/
    python -m dpbench.telemetry score --results answers/          # or --tables sim/
    python -m dpbench.telemetry baselines [--tables sim/]
    python -m dpbench.telemetry synthesize --run RUN_DIR            # sample a trained run's model again

Modules: ``schema`` (the 13 tables), ``corpus`` (reading and validating a
directory of parquet tables), ``world`` (every number the simulator draws from),
``population``/``coverage``/``reporting_days`` and one module per table family
(the simulator's parts), ``simulator``, ``benchmark_queries`` and ``queries/`` (the 11
queries), ``query_runner``, ``scoring``, ``baselines``, ``truth``; for the DP-VAE, ``wide_table`` (and ``wide_table_sql``),
``dataset`` (``dataset=telemetry``), ``marginals`` (the DP release synthesis is matched to), ``vae`` and ``raking`` (the models),
``synthesis`` and ``decoder``.
"""

from dpbench.extras import require_extra

require_extra("telemetry")  # before any module of the workload imports duckdb or pyarrow
