"""The verifier against known plugins: every broken one in the zoo is caught for its own reason, and
every correct one (the built-ins through the adapter, the example plugin, the zoo's correct ones)
is VERIFIED with no false alarm over five seeds."""

import functools
import importlib
import inspect
import math
import pkgutil

import pytest
from plugin_zoo import BROKEN, CORRECT, OverstatedSigma

import mechanisms
from dpbench.privacy.accountant import epsilon
from dpbench.privacy.ledger import PrivacyLedger, StepRecord
from dpbench.privacy.mechanism import Mechanism
from dpbench.verification.preflight import FakeRun, plugin_factory, preflight
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin

RUN = FakeRun()


def builtin_mechanisms() -> list[type]:
    """Every structured mechanism in ``mechanisms/`` that builds from max_grad_norm (and epochs) alone."""
    found = []
    for info in pkgutil.iter_modules(mechanisms.__path__):
        module = importlib.import_module(f"mechanisms.{info.name}")
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Mechanism) and obj.__module__ == module.__name__:
                required = [
                    p for p in inspect.signature(obj).parameters.values()
                    if p.default is inspect.Parameter.empty and p.name not in ("max_grad_norm", "epochs")
                ]
                if not required:
                    found.append(obj)
    return found


def composed_mechanism() -> functools.partial | None:
    try:
        from mechanisms.composed import Composed
        from mechanisms.momentum import NoisyMomentum
        from mechanisms.noise_decay import NoiseDecay
        from mechanisms.perlayer import PerLayerClipping
    except ImportError:
        return None
    composed = functools.partial(
        Composed, clipping=PerLayerClipping, noise=functools.partial(NoiseDecay, epochs=RUN.epochs), postprocessing=NoisyMomentum
    )
    composed.__name__ = "Composed"
    return composed


def correct_factories() -> list:
    return builtin_mechanisms() + [f for f in [composed_mechanism()] if f is not None] + [FlatClipPlugin] + CORRECT


def factory_of(cls):
    if isinstance(cls, functools.partial):
        from dpbench.privacy.adapter import as_researcher_plugin

        return plugin_factory(as_researcher_plugin(cls), RUN)
    return plugin_factory(cls, RUN)


@pytest.mark.slow
@pytest.mark.parametrize("cls,verdict,reason,ratio", BROKEN, ids=[c.__name__ for c, *_ in BROKEN])
def test_broken_plugin_is_flagged_for_its_reason(cls, verdict, reason, ratio):
    result = preflight(factory_of(cls), RUN, seed=0, name=cls.__name__)
    report = result.report
    assert report.verdict == verdict, report.summary()
    assert any(reason in f.probe for f in report.findings), report.summary()
    violations = [f for f in report.findings if f.kind == "violation"]
    assert all(f.upper < 0.9 * f.claimed for f in violations)
    if ratio is not None:
        assert min(f.measured / f.claimed for f in violations) <= ratio
    assert result.epsilon.verified.primary > result.epsilon.claimed.primary


@pytest.mark.slow
@pytest.mark.parametrize("cls", correct_factories(), ids=lambda c: c.__name__)
def test_correct_plugin_is_verified_over_five_seeds(cls):
    for seed in range(5):
        result = preflight(factory_of(cls), RUN, seed=seed, name=cls.__name__)
        assert result.report.verdict == "VERIFIED", f"seed {seed}:\n{result.report.summary()}"
        assert result.epsilon.verified == result.epsilon.claimed


def test_builtins_are_discovered():
    names = {c.__name__ for c in builtin_mechanisms()}
    assert {"FixedClipping", "AdaptiveClipping"} <= names


def test_verified_epsilon_matches_an_independent_ledger_at_the_true_multiplier():
    """OverstatedSigma adds 0.6 z noise: the verified epsilon is that of a plain ledger at 0.6 z
    (within the measurement's resolution), computed here without the verifier."""
    result = preflight(factory_of(OverstatedSigma), RUN, seed=1, name="OverstatedSigma")
    steps = result.steps
    record = lambda z: StepRecord(0, 0, RUN.sampling_rate, z, 1.0, "x", "claimed")
    at_truth = epsilon(PrivacyLedger([record(0.6)] * steps), RUN.delta)
    assert result.epsilon.verified.primary == pytest.approx(at_truth, rel=0.25)
    assert result.epsilon.claimed.primary == pytest.approx(epsilon(PrivacyLedger([record(1.0)] * steps), RUN.delta), rel=1e-9)
    assert math.isfinite(result.epsilon.verified.pld)
