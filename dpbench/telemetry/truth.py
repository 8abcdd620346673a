"""Where the published answers (ground truth) of the benchmark queries live.

The real corpus is access-controlled; what dpbench may read are the published
answers of the real 1M-device sample, one CSV per query. They are looked up in
this order: an explicit path, the ``DPBENCH_TELEMETRY_TRUTH`` environment
variable, then ``../shared/telemetry/ground_truth`` beside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

TRUTH_ENV_VAR = "DPBENCH_TELEMETRY_TRUTH"
_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRUTH_DIR = _REPO_ROOT.parent / "shared" / "telemetry" / "ground_truth"


def locate_truth_dir(explicit: Path | str | None = None) -> Path:
    """Return the ground-truth directory, or raise FileNotFoundError saying how to point at one."""
    if explicit is not None:
        candidate, source = Path(explicit), "--truth"
    elif os.environ.get(TRUTH_ENV_VAR):
        candidate, source = Path(os.environ[TRUTH_ENV_VAR]), f"${TRUTH_ENV_VAR}"
    else:
        candidate, source = DEFAULT_TRUTH_DIR, "the default location"
    if not candidate.is_dir():
        raise FileNotFoundError(
            f"ground-truth directory {candidate} (from {source}) does not exist; pass --truth DIR "
            f"or set {TRUTH_ENV_VAR} to the folder holding the published answer CSVs "
            "(e.g. Xeon_network_consumption.csv)"
        )
    return candidate
