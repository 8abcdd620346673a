"""Optional dependencies, installed as pip extras, and the error that names the one to install.

The core (vision datasets, mechanisms, the privacy kernel, verification, sweeps and reports) needs none of
them. ``dpbench[telemetry]`` (duckdb, pyarrow) serves the telemetry workload, ``dpbench[scatter]`` (kymatio)
the ScatterNet features, ``dpbench[all]`` both. A feature that needs an extra calls :func:`require_extra`
before it imports the extra's packages, so a missing package is reported with the command that installs it.
"""

from __future__ import annotations

import importlib

from dpbench.errors import DpbenchError

# extra -> (what needs it, the importable packages it installs); pyproject.toml's optional-dependencies list the
# same packages (a test keeps the two in step).
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "telemetry": ("the telemetry workload (dpbench.telemetry, dataset=telemetry)", ("duckdb", "pyarrow")),
    "scatter": ("ScatterNet features (the *_scattering datasets)", ("kymatio",)),
}


class MissingExtraError(DpbenchError, ImportError):
    """A feature needs an optional package that is not installed; the message names the extra to install."""

    def __init__(self, extra: str, message: str) -> None:
        super().__init__(message)
        self.extra = extra


def import_errors(extra: str) -> dict[str, ImportError]:
    """The packages of ``extra`` that cannot be imported here, with the reason."""
    errors = {}
    for package in EXTRAS[extra][1]:
        try:
            importlib.import_module(package)
        except ImportError as error:
            errors[package] = error
    return errors


def require_extra(extra: str) -> None:
    """Raise :class:`MissingExtraError` unless every package of ``extra`` imports."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra '{extra}'; the extras are {', '.join(sorted(EXTRAS))}")
    errors = import_errors(extra)
    if errors:
        feature = EXTRAS[extra][0]
        reasons = "; ".join(str(error) for error in errors.values())
        raise MissingExtraError(
            extra,
            f"{feature} needs {', '.join(errors)}, which cannot be imported ({reasons}): "
            f"pip install 'dpbench[{extra}]' (or 'dpbench[all]'; from a checkout: pip install -e '.[{extra}]')"
        )
