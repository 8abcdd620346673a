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


@pytest.fixture(scope="session")
def tiny_run_overrides():
    """``tiny_run_overrides(root, *extra)``: overrides of a telemetry run small enough for a test (2,000
    devices, a tiny VAE, one epoch at epsilon 4, results under ``root``); ``extra`` come last, so they win."""
    return _tiny_run_overrides


def _tiny_run_overrides(root: Path, *extra: str) -> list[str]:
    return ["dataset=telemetry", "dataset.devices=2000", "model.hidden=[32,16]", "model.latent=4",
            "train.epochs=1", "train.batch_size=256", "train.physical_batch_size=256", "privacy.target_epsilon=4",
            "progress=false", f"paths.results={root / 'results'}", *extra]
