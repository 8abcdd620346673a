"""What a plugin releases is what the verifier measures: every release is made the same way, probed step or
not (a deep copy of the plugin with fresh streams, under a seed of the harness's), and at a probed step it is
the verifier's first draw. So a plugin that behaves well only when copied or probed gains nothing: it cannot
tell a probed step from another, and its state still advances from the release it made."""

import math
import random

import numpy as np
import pytest
import torch
from plugin_zoo import (
    ClaimsMoreAfterAProbe,
    ModuleLevelGenerator,
    NoisedMomentum,
    NoiseOnlyAfterTheFirstCall,
    NoiseOnlyUnderForeignSeed,
    NoiseOnlyWhenCopied,
    StopsNoisingAfterAProbe,
    StopsNoisingAfterAProbeSeenInAGlobal,
)

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.privatizer import PluginPrivatizer
from dpbench.verification.preflight import FakeRun, fake_gradients, plugin_factory, preflight
from dpbench.verification.verifier import PluginVerifier
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin

RUN = FakeRun()


def releases(plugin, verifier=None, steps=40):
    privatizer = PluginPrivatizer(plugin, "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, 7, verifier=verifier)
    grads = next(fake_gradients(RUN, 1, 0))
    return [privatizer.release([MaterializedGradients(grads)], step, 0).gradient for step in range(steps)], grads


@pytest.mark.parametrize("plugin_class", [NoiseOnlyWhenCopied, NoiseOnlyUnderForeignSeed])
def test_a_plugin_that_noises_only_when_probed_is_noised_in_every_release(plugin_class):
    """Before every release was made under the harness's own seed, a plugin noised only under the
    verifier's seeds was VERIFIED on a run that released most steps without noise."""
    torch.manual_seed(0)
    verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 0.01, 1000, draws=4)
    outputs, _ = releases(plugin_factory(plugin_class, RUN)(), verifier, steps=60)
    assert len(verifier.report().probes) <= 3  # step 0 and perhaps one or two others: most releases unprobed
    flat = torch.stack([torch.cat([o.flatten() for o in out]) for out in outputs])
    expected = RUN.noise_multiplier * RUN.max_grad_norm / RUN.batch_size
    assert float(flat.std(dim=0).mean()) == pytest.approx(expected, rel=0.15)


class Observer(FlatClipPlugin):
    """A correct plugin that records what it could use to tell a probed step from another: the global
    generators' seeds and states, its own generator, its inputs' identity markers and autograd (the call
    stack it may not read: tests/privacy/test_containment.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.own = torch.Generator().manual_seed(11)
        self.seen = []

    def clip_and_noise(self, per_sample_grads, step, epoch):
        self.seen.append((
            torch.initial_seed(), hash(torch.get_rng_state().numpy().tobytes()), int(np.random.get_state()[1][0]),
            random.getstate()[1][0], self.own.initial_seed(), torch.is_grad_enabled(),
            [(g.requires_grad, g.is_leaf, g._version, g.is_contiguous(), g.dtype) for g in per_sample_grads],
        ))
        return super().clip_and_noise(per_sample_grads, step, epoch)


def test_a_plugin_sees_the_same_at_a_probed_step_as_at_an_unprobed_one():
    probed_steps = {3}
    runs = []
    for probe in (False, True):
        verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, 1000, draws=4)
        verifier.should_probe = lambda step, epoch, probe=probe: probe and step in probed_steps
        plugin = plugin_factory(Observer, RUN)()
        outputs, _ = releases(plugin, verifier, steps=6)
        runs.append((plugin.seen, outputs, verifier.report().probes))
    (plain, plain_outputs, no_probes), (probed, probed_outputs, probes) = runs
    assert not no_probes and [p.step for p in probes] == [3]
    assert len(plain) == len(probed) == 6  # each step's release, the only call the plugin itself sees
    assert plain == probed
    for a, b in zip(plain_outputs, probed_outputs):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_at_a_probed_step_the_release_is_the_first_measured_draw():
    """The verifier's shifts are measured against the release under the release's own stream: a plugin
    whose release differs from the verifier's draws under the same stream (noise only after the first call)
    reads as a whole noise vector of shift, far below the claim."""
    verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, RUN.steps_per_epoch, draws=4)
    NoiseOnlyAfterTheFirstCall.calls.clear()
    releases(plugin_factory(NoiseOnlyAfterTheFirstCall, RUN)(), verifier, steps=1)
    (probe,) = verifier.report().probes
    assert not probe.passed and probe.upper < 0.1 * probe.claimed


def test_a_plugin_cannot_claim_more_at_a_probed_step_than_was_measured():
    ClaimsMoreAfterAProbe.calls.clear()
    verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, RUN.steps_per_epoch, draws=4)
    plugin = plugin_factory(ClaimsMoreAfterAProbe, RUN)()
    privatizer = PluginPrivatizer(plugin, "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, 7, verifier=verifier)
    records = [privatizer.release([MaterializedGradients(grads)], step, 0).record
               for step, grads in enumerate(fake_gradients(RUN, 5, 0))]
    assert [r.noise_multiplier for r in records] == [RUN.noise_multiplier] * 5
    assert [p.claimed for p in verifier.report().probes] == [RUN.noise_multiplier] * 5


@pytest.mark.parametrize("plugin_class", [StopsNoisingAfterAProbe, StopsNoisingAfterAProbeSeenInAGlobal])
def test_a_plugin_cannot_learn_afterwards_that_a_step_was_probed(plugin_class):
    """Calls counted in a class attribute or a module global would show, after a probed step, that it was
    probed; the verifier puts that state back after every probe, so every release stays noised."""
    plugin = plugin_factory(plugin_class, RUN)()
    plugin.counter().clear()
    verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 0.3, RUN.steps_per_epoch, draws=3,
                              max_overhead=None)
    privatizer = PluginPrivatizer(plugin, "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, 7, verifier=verifier)
    steps = 2 * RUN.steps_per_epoch
    residuals = []
    for step, grads in enumerate(fake_gradients(RUN, steps, 0)):
        released = privatizer.release([MaterializedGradients(grads)], step, step // RUN.steps_per_epoch).gradient
        clipped = [g / RUN.batch_size for g in plugin.clipped_sum(grads)]
        residuals.append(float(torch.cat([(r - c).flatten() for r, c in zip(released, clipped)]).norm()))
    assert len(verifier.report().probes) >= 10 and verifier.report().verdict == "VERIFIED"
    assert max(plugin.counter().values()) == 1  # it never saw a probe's call
    noise = RUN.noise_multiplier * RUN.max_grad_norm * math.sqrt(sum(s.numel() for s in RUN.shapes)) / RUN.batch_size
    assert min(residuals) > 0.5 * noise  # every release noised


def test_a_plugin_with_a_module_level_generator_is_verified():
    """Its copies share the generator, so the release and the verifier's calls under the release's seed saw
    different noise and the shift read as a shortfall (a false VIOLATION) until shared generators were reseeded
    per call."""
    result = preflight(plugin_factory(ModuleLevelGenerator, RUN), RUN, seed=0, name="ModuleLevelGenerator", steps=40)
    assert result.report.verdict == "VERIFIED", result.report.summary()


def test_the_plugin_advances_from_its_release():
    plugin = plugin_factory(NoisedMomentum, RUN)()
    verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, RUN.steps_per_epoch, draws=4)
    outputs, _ = releases(plugin, verifier, steps=1)
    assert plugin.steps_seen == 1 and all(torch.equal(m, d) for m, d in zip(plugin.momentum, outputs[0]))


def test_a_secret_step_of_every_epoch_is_probed_whatever_the_overhead():
    verifier = PluginVerifier(
        RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 0.5, RUN.steps_per_epoch, draws=3, max_overhead=0.0
    )
    plugin = plugin_factory(NoisedMomentum, RUN)()
    privatizer = PluginPrivatizer(plugin, "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, 0, verifier=verifier)
    steps = 3 * RUN.steps_per_epoch
    for step, grads in enumerate(fake_gradients(RUN, steps, 0)):
        privatizer.release([MaterializedGradients(grads)], step, step // RUN.steps_per_epoch)
    report = verifier.report()
    probed = [p.step for p in report.probes]
    assert [s // RUN.steps_per_epoch for s in probed if verifier.epoch_step(s)] == [0, 1, 2]
    assert report.dropped_for_budget > 0
    assert report.describe().startswith(f"VERIFIED ({len(probed)} of {steps} steps measured; the other steps carry")
    assert f"{report.dropped_for_budget} extra probes dropped" in report.describe()
    assert math.isfinite(report.to_dict()["steps_measured"])


def test_probe_rate_one_measures_every_step_whatever_the_overhead():
    verifier = PluginVerifier(
        RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, RUN.steps_per_epoch, draws=3, max_overhead=0.0
    )
    privatizer = PluginPrivatizer(
        plugin_factory(NoisedMomentum, RUN)(), "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, 0,
        verifier=verifier,
    )
    for step, grads in enumerate(fake_gradients(RUN, 12, 0)):
        privatizer.release([MaterializedGradients(grads)], step, 0)
    assert [p.step for p in verifier.report().probes] == list(range(12))
    assert verifier.report().dropped_for_budget == 0


# ------------------------------------------------------------------------ a fourth red team's routes
SIGNALLED = '''
import sys
import torch

class Tripwire:
    """Module-level data of the plugin's own class: the verifier's snapshot of its shared state copies it."""
    fired = []

    def __deepcopy__(self, memo):
        Tripwire.fired.append(True)
        {copy_body}
        return Tripwire()


class Opaque:
    """An attribute of the plugin without attributes of its own: reading the plugin's state pickles it."""
    __slots__ = ()

    def __deepcopy__(self, memo):
        return Opaque()

    def __reduce_ex__(self, protocol):
        {reduce_body}
        return (Opaque, ())

TRIPWIRE = Tripwire()

class NoisesOnlyAfterACopy:
    """Noises a release only when its module's data was copied since the last one."""
    def __init__(self, max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs, target_epsilon,
                 target_delta):
        self.C, self.z, self.B = max_grad_norm, noise_multiplier, batch_size
        self.opaque = Opaque()

    def clip_and_noise(self, per_sample_grads, step, epoch):
        copied = bool(Tripwire.fired)
        Tripwire.fired.clear()
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_sample_grads))
        scale = torch.clamp(self.C / (norms + 1e-12), max=1.0)
        std = self.z * self.C if copied else 0.0
        return [(torch.einsum("b,b...->...", scale, g) + std * torch.randn(g.shape[1:])) / self.B
                for g in per_sample_grads]

    def get_effective_sigma(self, step, epoch):
        return self.z
'''


def signalled_plugin(tmp_path, name, copy_body="pass", reduce_body="pass"):
    import importlib.util
    import sys

    path = tmp_path / f"{name}.py"
    path.write_text(SIGNALLED.replace("{copy_body}", copy_body).replace("{reduce_body}", reduce_body))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return plugin_factory(module.NoisesOnlyAfterACopy, RUN)()


def test_the_work_before_a_release_is_the_same_at_every_step(tmp_path):
    """The verifier snapshotted the plugin's shared state only before a probed release, running its copy
    methods: a red team's plugin noised only then (121 of 180 releases without noise, VERIFIED). Now the
    snapshot is taken before every release, so every release is noised."""
    torch.manual_seed(0)
    verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 0.01, 1000, draws=4)
    outputs, _ = releases(signalled_plugin(tmp_path, "signalled_every_step"), verifier, steps=60)
    assert len(verifier.report().probes) <= 3
    flat = torch.stack([torch.cat([o.flatten() for o in out]) for out in outputs])
    expected = RUN.noise_multiplier * RUN.max_grad_norm / RUN.batch_size
    assert float(flat.std(dim=0).mean()) == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("route", ["copy_body", "reduce_body"])
def test_the_plugins_copy_and_pickle_methods_run_contained(tmp_path, route):
    """Copying and reading the plugin's state runs its own __deepcopy__ / __reduce_ex__: a red team's read
    the kernel's frame there (outside containment) and replaced a verified release with the un-noised sum."""
    from dpbench.privacy.containment import ContainmentError

    plugin = signalled_plugin(tmp_path, f"frames_in_{route}", **{route: "sys._getframe(1)"})
    verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, 1000, draws=4)
    with pytest.raises(ContainmentError, match="frame"):
        releases(plugin, verifier, steps=2)


def test_every_stream_of_a_probe_derives_from_the_release_key(monkeypatch):
    """The verifier's draws were seeded from the run's public seed: with secure noise (a secret release key) a
    fifth red team's plugin told them from the release by the seed, noised them honestly, and gave the release
    noise its author could subtract (VERIFIED at probe_rate=1, 30 of 30 releases effectively noise-free). Now
    every call of a probe derives from the release's key: two keys share no call seed."""
    from dpbench.privacy import plugin_streams

    called: list[int] = []
    seed_globals = plugin_streams.seed_globals
    monkeypatch.setattr(plugin_streams, "seed_globals", lambda seed: (called.append(seed), seed_globals(seed)))
    seeds = []
    for key in (7, 8):
        verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, RUN.steps_per_epoch, draws=4)
        privatizer = PluginPrivatizer(plugin_factory(FlatClipPlugin, RUN)(), "p", RUN.shapes, RUN.max_grad_norm,
                                      RUN.sampling_rate, key, verifier=verifier)
        grads = next(fake_gradients(RUN, 1, 0))
        called.clear()
        privatizer.release([MaterializedGradients(grads)], 0, 0)
        assert len(verifier.report().probes) == 1
        seeds.append(set(called))
    assert len(seeds[0]) >= 4 and not seeds[0] & seeds[1]  # the release and 3 more draws
