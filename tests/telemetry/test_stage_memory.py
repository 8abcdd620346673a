"""Each stage's peak RSS is its own: an allocation in one stage shows in that stage (and in the stages around
it), not in the next one."""

from __future__ import annotations

import contextlib
import ctypes
import logging

import numpy as np
import pytest

from dpbench.telemetry.stage_memory import StageMeter, reset_peak, rss_bytes

MIB = 1024**2

pytestmark = pytest.mark.skipif(not reset_peak(), reason="the RSS high-water mark cannot be reset on this system")


def _touch(mib: int) -> None:
    block = np.ones(mib * MIB // 8)  # written, so resident
    del block
    # Hand the freed block back to the system: a run's dpbench.runtime.tune_allocator (called by any earlier
    # test that ran the CLI in this process) keeps freed memory resident, which would carry it into the next stage.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def test_a_stage_peak_is_its_own_and_outer_stages_cover_inner_ones(caplog):
    meter = StageMeter()
    base = rss_bytes()[0]
    with caplog.at_level(logging.DEBUG, logger="dpbench"):
        with meter.stage("outer"):
            with meter.stage("big"):
                _touch(400)
            with meter.stage("small"):
                _touch(20)
        with meter.stage("after"):
            pass
    peaks = {name: peak for name, peak, _ in meter.peaks}
    assert peaks["big"] - base > 350 * MIB
    assert peaks["small"] - base < 150 * MIB
    assert peaks["outer"] >= peaks["big"]
    assert peaks["after"] - base < 150 * MIB and peaks["between outer and after"] - base < 150 * MIB
    assert list(peaks) == ["between start and outer", "big", "small", "outer", "between outer and after", "after"]
    assert any("memory: big: peak RSS" in r.message and r.levelno == logging.DEBUG for r in caplog.records)
    assert any("memory: outer: peak RSS" in r.message and r.levelno == logging.INFO for r in caplog.records)
