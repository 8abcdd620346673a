"""A small simulated corpus shared by the telemetry tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpbench.telemetry.simulator import SimulationReport, simulate


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationReport]:
    """20,000 simulated devices (seed 0) and the simulation report."""
    out = tmp_path_factory.mktemp("sim20k")
    return out, simulate(20_000, out, seed=0)
