"""The base of dpbench's own errors: a problem in the user's input or in a run's state, found where it is detected.

``python -m dpbench`` prints such an error as one paragraph on stderr (no traceback; the full one goes to the
run directory's ``error.txt``) and exits with status 1. Subclass :class:`DpbenchError` for a new error whose
message names the problem and the fix.
"""

from __future__ import annotations


class DpbenchError(Exception):
    """A user-facing dpbench error: its message names the problem and the fix."""
