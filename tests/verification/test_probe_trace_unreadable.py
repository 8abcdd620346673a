"""Reachable state the probe-trace check cannot read counts as a trace (its own file: every plugin of a module
reaches that module's globals, and the honest plugins of test_probe_trace.py must not reach this one's)."""

import itertools

from dpbench.verification.findings import VERIFIED
from dpbench.verification.preflight import FakeRun, plugin_factory, preflight
from dpbench.verification.verifier import PROBE_TRACE
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin

TICKS = (i for i in itertools.count())  # a Python generator: state no fingerprint can read


class CountsInAGenerator(FlatClipPlugin):
    """Counts its calls by advancing a module-level generator, which could tell it that a step was probed."""

    def clip_and_noise(self, grads, step, epoch):
        next(TICKS)
        return super().clip_and_noise(grads, step, epoch)


def test_state_the_check_cannot_read_is_a_trace():
    run = FakeRun(dataset_size=128, batch_size=16, epochs=1)
    result = preflight(plugin_factory(CountsInAGenerator, run), run, probe_rate=1.0, draws=4, name="generator")
    assert result.report.verdict != VERIFIED
    assert all(PROBE_TRACE in p.worst_probe for p in result.report.probes)
    assert any("TICKS" in f.detail and "cannot read" in f.detail for f in result.report.findings)
