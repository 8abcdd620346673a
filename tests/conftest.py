"""Shared pytest fixtures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from synthetic_vision import build_synthetic_root

import dpbench.cli  # noqa: F401  (registers the config resolvers)
from dpbench.extras import EXTRAS, MissingExtraError, import_errors

if os.environ.get("PYTEST_XDIST_WORKER"):  # one process per core (pytest -n auto): one thread each, children too
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DPBENCH_SHARED", REPO_ROOT.parent / "shared"))
# CI sets this: tests that need the shared datasets fail instead of being skipped when they are missing.
REQUIRE_SHARED = os.environ.get("DPBENCH_REQUIRE_SHARED") == "1"

# Without its optional packages (a core install, `pip install -e .`), a feature's tests are skipped where they
# reach it, naming the extra; tests/telemetry imports the workload everywhere, so it is not collected at all (the
# report header says so). CI installs every extra.
MISSING_EXTRAS = [extra for extra in EXTRAS if import_errors(extra)]
collect_ignore = ["telemetry"] if "telemetry" in MISSING_EXTRAS else []


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"not collected: tests/{path} (needs pip install -e '.[telemetry]')" for path in collect_ignore]
    if config.option.markexpr == "not slow":
        lines.append("the slow tests are left out (the default): -m slow runs only them, -m '' runs everything")
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    return (yield from skip_if_an_extra_is_missing())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    return (yield from skip_if_an_extra_is_missing())


def skip_if_an_extra_is_missing():
    """A test that reaches a feature whose extra is not installed here is skipped, naming the extra (where the
    extra is installed, as in CI, the error stays a failure)."""
    try:
        return (yield)
    except Exception as error:
        cause = error
        while cause is not None and not isinstance(cause, MissingExtraError):  # Hydra wraps what its targets raise
            cause = cause.__cause__ or cause.__context__
        if cause is None or cause.extra not in MISSING_EXTRAS:
            raise
        pytest.skip(f"{EXTRAS[cause.extra][0]} needs pip install -e '.[{cause.extra}]'")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need the real datasets (``-m shared_data`` selects them, ``-m 'not shared_data'``
    leaves them out)."""
    for item in items:
        if "real_vision_data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def vision_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny data root with MNIST, Fashion-MNIST and CIFAR-10 files written by the tests themselves (same
    formats, not the real images: load them with ``verify_checksums=False``). Needs nothing on disk."""
    return build_synthetic_root(tmp_path_factory.mktemp("synthetic_data_root"))


@pytest.fixture(scope="session")
def real_vision_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MNIST, Fashion-MNIST and the CIFAR-10 stand-in, built once per session by ``prepare.sh``
    from ``$DPBENCH_SHARED/data`` or ``../shared/data`` beside the repository; skipped when neither exists
    (a failure when ``DPBENCH_REQUIRE_SHARED=1``, as in CI)."""
    prepare = SHARED / "data" / "prepare.sh"
    if not prepare.is_file():
        message = f"needs the real datasets: {prepare} not found (put ../shared beside the repo or set DPBENCH_SHARED)"
        if REQUIRE_SHARED:
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("data_root")
    subprocess.run(["bash", str(prepare), str(root), sys.executable], check=True, capture_output=True)
    return root


CONFIG_DIR = str(REPO_ROOT / "conf")


@pytest.fixture
def make_config(tmp_path: Path):
    """``make_config(*overrides)``: the composed config of a short digits run writing under tmp_path."""

    def compose_config(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(
                "config",
                overrides=["train.epochs=2", "progress=false", f"paths.results={tmp_path / 'results'}", *overrides],
            )

    return compose_config


@pytest.fixture
def run_killed_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch):
    """``run_killed_after_first_checkpoint(cfg, run_dir)``: run an experiment that dies (KeyboardInterrupt)
    right after writing its first checkpoint, as a killed process would."""
    from dpbench.training import experiment
    from dpbench.training.experiment import run_experiment

    real_save = experiment.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("killed after the first checkpoint")

    def run(cfg: DictConfig, run_dir: Path) -> None:
        monkeypatch.setattr(experiment, "save_checkpoint", save_then_die)
        try:
            with pytest.raises(KeyboardInterrupt):
                run_experiment(cfg, run_dir)
        finally:
            monkeypatch.setattr(experiment, "save_checkpoint", real_save)

    return run


@pytest.fixture(autouse=True)
def _no_stale_integrity_baseline():
    """A run arms the kernel's integrity baseline (dpbench/privacy/containment.py) for its own process; a test
    that prepared a mechanism without finishing a run must not leave it armed for the next test's patches."""
    yield
    from dpbench.privacy.containment import disarm

    disarm()
