"""A probe's calls must leave no trace in anything the plugin can reach: each call runs on a copy and the
plugin's class, module and function data are put back, and what is left over (an object a copy shares with
the plugin) is measured after every probe. A plugin that reads such a trace knows which steps were probed and
can release un-noised after them; the verifier reports it as a violation (multiplier 0)."""

import collections
import copy
import io
import itertools
import logging

import pytest
from scipy import stats

from dpbench.privacy.isolation import StateFingerprint
from dpbench.verification.findings import VERIFIED
from dpbench.verification.preflight import FakeRun, plugin_factory, preflight
from dpbench.verification.verifier import PROBE_TRACE
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin

RUN = FakeRun(dataset_size=128, batch_size=16, epochs=1)


def _labels(plugin_class: type) -> list[str]:
    result = preflight(plugin_factory(plugin_class, RUN), RUN, probe_rate=1.0, draws=4, name=plugin_class.__name__)
    return [p.worst_probe for p in result.report.probes], result.report.verdict


class SharesABoxWithItsCopies(FlatClipPlugin):
    """Its ``__deepcopy__`` hands every copy the same counter: the verifier's calls count in it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box = collections.Counter()

    def __deepcopy__(self, memo: dict) -> "SharesABoxWithItsCopies":
        fresh = object.__new__(type(self))
        for key, value in vars(self).items():
            fresh.__dict__[key] = value if key == "box" else copy.deepcopy(value, memo)
        return fresh

    def clip_and_noise(self, grads, step, epoch):
        self.box[step] += 1
        return super().clip_and_noise(grads, step, epoch)


class CountsInABoundMethod(FlatClipPlugin):
    """A list's ``append`` kept on the instance: it deep-copies to itself, so every copy appends to one list."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        calls: list[int] = []
        self.note = calls.append

    def clip_and_noise(self, grads, step, epoch):
        self.note(step)
        return super().clip_and_noise(grads, step, epoch)


class CountsInAClosure(FlatClipPlugin):
    """A function made in ``__init__`` closes over a counter: every copy shares the function, so the counter."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        calls = collections.Counter()

        def note(step: int) -> None:
            calls[step] += 1

        self.note = note

    def clip_and_noise(self, grads, step, epoch):
        self.note(step)
        return super().clip_and_noise(grads, step, epoch)


class CountsInADefault(FlatClipPlugin):
    """A function with a mutable default, kept on the instance (``lambda`` made in ``__init__``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.note = lambda step, seen={}: seen.__setitem__(step, seen.get(step, 0) + 1)

    def clip_and_noise(self, grads, step, epoch):
        self.note(step)
        return super().clip_and_noise(grads, step, epoch)


class Ticker(itertools.count):
    """A count with attributes: its value is C state beside its ``__dict__``, which the fingerprint read alone."""


TICKER = Ticker()
LOG = io.StringIO()


class CountsInCState(FlatClipPlugin):
    """An eighth red team's: a module-level counter whose count is C state (a ``Ticker``) and a module-level
    ``io.StringIO`` log; neither could be put back nor was seen changing, and the plugin noised only until it
    saw a probe's calls there (VERIFIED with 7-15 of 20 steps un-noised)."""

    def clip_and_noise(self, grads, step, epoch):
        next(TICKER)
        LOG.write(f"{step};")
        return super().clip_and_noise(grads, step, epoch)


@pytest.mark.parametrize(
    "plugin_class", [SharesABoxWithItsCopies, CountsInABoundMethod, CountsInAClosure, CountsInADefault, CountsInCState]
)
def test_a_trace_the_probe_leaves_in_shared_state_is_a_violation(plugin_class):
    labels, verdict = _labels(plugin_class)
    assert verdict != VERIFIED
    assert all(PROBE_TRACE in label for label in labels)


class KeepsALogger(FlatClipPlugin):
    """An honest plugin that logs through a logger on its instance (a logger deep-copies to itself)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log = logging.getLogger("dpbench.tests.keeps_a_logger")

    def clip_and_noise(self, grads, step, epoch):
        self.log.debug("step %d", step)
        return super().clip_and_noise(grads, step, epoch)


NORM = stats.norm  # holds numpy's global generator: what the probe seeds must be as the release left it


class ReachesNumpysGlobalGenerator(FlatClipPlugin):
    """An honest plugin whose code names a scipy distribution, and through it numpy's global generator (the
    verifier's fresh-instance check seeded that generator and left it moved: a false trace)."""

    def clip_and_noise(self, grads, step, epoch):
        NORM.ppf(0.5)
        return super().clip_and_noise(grads, step, epoch)


RECENT_STEPS: collections.deque = collections.deque(maxlen=50)


class KeepsADequeOfSteps(FlatClipPlugin):
    """An honest plugin with a module-level diagnostics deque (flagged before: a deque was compared after the
    probe but not put back)."""

    def clip_and_noise(self, grads, step, epoch):
        RECENT_STEPS.append(step)
        return super().clip_and_noise(grads, step, epoch)


@pytest.mark.parametrize("plugin_class", [FlatClipPlugin, KeepsALogger, ReachesNumpysGlobalGenerator, KeepsADequeOfSteps])
def test_an_honest_plugin_leaves_no_trace(plugin_class):
    labels, verdict = _labels(plugin_class)
    assert verdict == VERIFIED and labels and not any(PROBE_TRACE in label for label in labels)


class TallyOfItsOwn(collections.Counter):
    pass


def test_an_object_whose_own_class_says_what_its_pickle_shows_is_unreadable():
    """An object without attributes whose class (not a library's) defines its pickle could hide C state (a call
    counter kept by ``itertools.count``) from a fingerprint that trusted it."""
    import itertools

    class Ticker(itertools.count):
        __slots__ = ()

        def __reduce__(self):
            return (Ticker, ())

    holder = TallyOfItsOwn()
    holder["ticker"] = Ticker()
    before = StateFingerprint(holder, random_states=False)
    next(holder["ticker"])
    assert before.unreadable and "Ticker" in before.unreadable[0]
