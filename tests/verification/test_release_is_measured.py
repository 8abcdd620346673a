"""What a plugin releases is what the verifier measures: every release is made by a deep copy of the
plugin (at a probed step, the verifier's first measured draw itself), so a plugin that behaves well only
when copied or probed gains nothing, and its state still advances from the release it made."""

import math

import pytest
import torch
from plugin_zoo import NoisedMomentum, NoiseOnlyWhenCopied

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.privatizer import PluginPrivatizer
from dpbench.verification.preflight import FakeRun, fake_gradients, plugin_factory
from dpbench.verification.verifier import PluginVerifier

RUN = FakeRun()


def releases(plugin, verifier=None, steps=40):
    privatizer = PluginPrivatizer(plugin, "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, verifier=verifier)
    grads = next(fake_gradients(RUN, 1, 0))
    return [privatizer.release([MaterializedGradients(grads)], step, 0).gradient for step in range(steps)], grads


def test_a_plugin_that_noises_only_when_copied_is_noised_in_every_release():
    torch.manual_seed(0)
    outputs, grads = releases(plugin_factory(NoiseOnlyWhenCopied, RUN)())
    flat = torch.stack([torch.cat([o.flatten() for o in out]) for out in outputs])
    expected = RUN.noise_multiplier * RUN.max_grad_norm / RUN.batch_size
    assert float(flat.std(dim=0).mean()) == pytest.approx(expected, rel=0.15)


def test_at_a_probed_step_the_release_is_the_first_measured_draw():
    plugin = plugin_factory(NoisedMomentum, RUN)()
    verifier = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, 3, RUN.steps_per_epoch, draws=4)
    grads = next(fake_gradients(RUN, 1, 0))
    measured = verifier.observe(plugin, grads, 0, 0)
    copy, draw = measured
    privatizer = PluginPrivatizer(plugin, "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate)
    verifier_again = PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, 3, RUN.steps_per_epoch, draws=4)
    privatizer.verifier = verifier_again
    released = privatizer.release([MaterializedGradients(grads)], 0, 0).gradient
    assert all(torch.equal(a, b) for a, b in zip(released, draw))
    assert plugin.steps_seen == 1 and all(torch.equal(m, d) for m, d in zip(plugin.momentum, draw))


def test_the_first_step_of_every_epoch_is_probed_whatever_the_overhead():
    verifier = PluginVerifier(
        RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 0.5, 0, RUN.steps_per_epoch, draws=3, max_overhead=0.0
    )
    plugin = plugin_factory(NoisedMomentum, RUN)()
    privatizer = PluginPrivatizer(plugin, "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, verifier=verifier)
    steps = 3 * RUN.steps_per_epoch
    for step, grads in enumerate(fake_gradients(RUN, steps, 0)):
        privatizer.release([MaterializedGradients(grads)], step, step // RUN.steps_per_epoch)
    report = verifier.report()
    probed = [p.step for p in report.probes]
    assert [s for s in probed if s % RUN.steps_per_epoch == 0] == [0, RUN.steps_per_epoch, 2 * RUN.steps_per_epoch]
    assert report.dropped_for_budget > 0
    assert report.describe().startswith(f"VERIFIED ({len(probed)} of {steps} steps measured; the other steps carry")
    assert f"{report.dropped_for_budget} extra probes dropped" in report.describe()
    assert math.isfinite(report.to_dict()["steps_measured"])


def test_probe_rate_one_measures_every_step_whatever_the_overhead():
    verifier = PluginVerifier(
        RUN.shapes, RUN.max_grad_norm, RUN.batch_size, 1.0, 0, RUN.steps_per_epoch, draws=3, max_overhead=0.0
    )
    privatizer = PluginPrivatizer(
        plugin_factory(NoisedMomentum, RUN)(), "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, verifier=verifier
    )
    for step, grads in enumerate(fake_gradients(RUN, 12, 0)):
        privatizer.release([MaterializedGradients(grads)], step, 0)
    assert [p.step for p in verifier.report().probes] == list(range(12))
    assert verifier.report().dropped_for_budget == 0
