"""The light core install: dpbench and its default job work without the optional packages (duckdb, pyarrow,
kymatio), the features that need them name the extra to install, and pyproject.toml declares the extras that
dpbench.extras names. Each check runs in a fresh interpreter whose import system refuses the optional packages,
as an environment without them would."""

import subprocess
import sys
from pathlib import Path

import pytest

from dpbench.extras import EXTRAS

REPO_ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = sorted(package for _, packages in EXTRAS.values() for package in packages)

# Prepended to each script: an import finder that answers "no module named ..." for the optional packages.
WITHOUT_EXTRAS = f"""
import sys

class RefuseOptional:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, RefuseOptional())
"""


def run_without_extras(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + script, *args],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


def test_the_optional_packages_are_refused_by_the_test_interpreter() -> None:
    result = run_without_extras("import pyarrow")
    assert result.returncode != 0 and "No module named 'pyarrow'" in result.stderr


@pytest.mark.slow
def test_the_default_job_runs_without_the_optional_packages(tmp_path: Path) -> None:
    result = run_without_extras(
        "import runpy; runpy.run_module('dpbench', run_name='__main__')",
        "train.epochs=1", "progress=false", f"paths.results={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: test acc" in result.stderr + result.stdout
    assert len(list(tmp_path.glob("runs/*/summary.json"))) == 1


@pytest.mark.slow
def test_every_module_outside_the_optional_features_imports_without_their_packages() -> None:
    script = """
import importlib, pkgutil
import dpbench, mechanisms

OPTIONAL_FEATURES = ("dpbench.telemetry", "dpbench.telemetry.vae")  # they need dpbench[telemetry]
failures = []
for package in (dpbench, mechanisms):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name.startswith(OPTIONAL_FEATURES) or module.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(module.name)
        except Exception as error:
            failures.append(f"{module.name}: {type(error).__name__}: {error}")
print("\\n".join(failures))
"""
    result = run_without_extras(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == ""


def test_each_feature_that_needs_an_extra_names_it(tmp_path: Path) -> None:
    script = """
import torch
from dpbench.extras import MissingExtraError
from dpbench.data.scattering import scattering_transform

for name, attempt in [
    ("telemetry", lambda: __import__("dpbench.telemetry.query_runner")),
    ("scatter", lambda: scattering_transform(torch.zeros(1, 1, 8, 8))),
]:
    try:
        attempt()
    except MissingExtraError as error:
        print(name, "->", error)
    else:
        print(name, "-> no error")
"""
    result = run_without_extras(script)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" -> ", 1) for line in result.stdout.splitlines())
    assert "pip install 'dpbench[telemetry]'" in lines["telemetry"] and "duckdb, pyarrow" in lines["telemetry"]
    assert "pip install 'dpbench[scatter]'" in lines["scatter"] and "kymatio" in lines["scatter"]


@pytest.mark.slow
def test_a_run_of_a_feature_without_its_extra_is_one_paragraph_naming_it(tmp_path: Path) -> None:
    result = run_without_extras(
        "import runpy; runpy.run_module('dpbench', run_name='__main__')",
        "dataset=telemetry", "progress=false", f"paths.results={tmp_path}",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "MissingExtraError" in result.stderr and "pip install 'dpbench[telemetry]'" in result.stderr


def test_pyproject_declares_the_extras_and_the_test_extra_installs_them_all() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    core = " ".join(project["dependencies"])
    for extra, (_, packages) in EXTRAS.items():
        declared = " ".join(extras[extra])
        assert all(package in declared and package not in core for package in packages), extra
    assert extras["all"] == [f"dpbench[{','.join(EXTRAS)}]"]
    assert "dpbench[all]" in extras["test"]
