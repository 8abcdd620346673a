"""Peak resident memory (RSS) of each stage of a telemetry run, logged as the run goes.

Linux keeps one high-water mark of a process's RSS (``VmHWM`` in ``/proc/self/status``); writing ``5``
to ``/proc/self/clear_refs`` resets it to the current RSS. A stage resets the mark when it starts and
reads it when it ends, so its peak is its own, not the run's so far. Stages nest: before a stage resets
the mark, every open stage takes the mark's value into its own peak, so an outer stage's peak still
covers its inner stages. The time between two top-level stages (e.g. training, which runs outside this
module's stages) is logged as its own line, ``between A and B``, so every moment of the run is in one line.

Where the mark cannot be reset (not Linux, or ``clear_refs`` not writable), each line reports the process's
peak so far and says so. Only this process is measured: DuckDB and torch threads are counted, child
processes are not.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("dpbench")

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_GIB = 1024**3


def rss_bytes() -> tuple[int, int]:
    """(current RSS, high-water mark) of this process in bytes; the current RSS is 0 where unknown."""
    try:
        fields = dict(line.split(":", 1) for line in _STATUS.read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return 0, peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def reset_peak() -> bool:
    """Reset the high-water mark to the current RSS; False where the system does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _process_age() -> float:
    """Seconds since this process started (0 where /proc does not say)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0
    return max(uptime - ticks / os.sysconf("SC_CLK_TCK"), 0.0)


@dataclass
class _Open:
    name: str
    peak: int
    started: float


@dataclass
class StageMeter:
    """The stages open in this process (the high-water mark is per process, so there is one meter:
    :data:`METER`); ``peaks`` holds each finished stage's (name, peak bytes, seconds) in order."""

    peaks: list[tuple[str, int, float]] = field(default_factory=list)
    _open: list[_Open] = field(default_factory=list)
    _last: str = "start"
    _last_ended: float = field(default_factory=lambda: time.perf_counter() - _process_age())
    _resettable: bool = True

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the peak RSS of the ``with`` block and log it (logger ``dpbench``: INFO, DEBUG when nested)."""
        if not self._open:
            self._record(f"between {self._last} and {name}", rss_bytes()[1], self._last_ended)
        _, mark = rss_bytes()
        for outer in self._open:
            outer.peak = max(outer.peak, mark)
        self._resettable = reset_peak()
        self._open.append(_Open(name, rss_bytes()[1], time.perf_counter()))
        try:
            yield
        finally:
            current = self._open.pop()
            _, mark = rss_bytes()
            for outer in self._open:
                outer.peak = max(outer.peak, mark)
            self._record(name, max(current.peak, mark), current.started, logging.DEBUG if self._open else logging.INFO)
            if not self._open:
                self._last, self._last_ended = name, time.perf_counter()
                self._resettable = reset_peak()

    def _record(self, name: str, peak: int, started: float, level: int = logging.INFO) -> None:
        seconds = time.perf_counter() - started
        self.peaks.append((name, peak, seconds))
        log.log(level, "memory: %s: peak RSS %.2f GiB%s, now %.2f GiB (%.1f s)", name, peak / _GIB,
                 "" if self._resettable else " (the process's peak so far: the mark cannot be reset here)",
                 rss_bytes()[0] / _GIB, seconds)


METER = StageMeter()
"""The process's meter (one per process, as the high-water mark it reads)."""
stage = METER.stage
