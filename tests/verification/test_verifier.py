"""The in-training verifier: it never disturbs the run, probes the steps it says it probes, accounts
with the rule it states, stops in strict mode, and survives a checkpoint."""

import io
import json

import pytest
import torch
from plugin_zoo import NoisedMomentum, RawNormAdaptive, ScheduleReportedAsMean, SkipsNoise

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.privatizer import PluginPrivatizer
from dpbench.verification import (
    PluginVerifier,
    PrivacyLeakError,
    PrivacyViolationError,
    UnverifiableLedgerError,
    epsilon_check,
)
from dpbench.verification.preflight import FakeRun, fake_gradients, plugin_factory
from mechanisms.examples.flat_clip_plugin import FlatClipPlugin

RUN = FakeRun()
STEPS = 2 * RUN.steps_per_epoch


def verifier(probe_rate=1.0, **options) -> PluginVerifier:
    options.setdefault("max_overhead", None)
    return PluginVerifier(RUN.shapes, RUN.max_grad_norm, RUN.batch_size, probe_rate, RUN.steps_per_epoch, **options)


def train(cls, check: PluginVerifier | None, steps: int = STEPS) -> tuple[list, object, PrivacyLedger]:
    """The kernel's plugin path (:class:`PluginPrivatizer`), probed by ``check``: outputs, plugin and ledger."""
    torch.manual_seed(123)
    plugin = plugin_factory(cls, RUN)()
    privatizer = PluginPrivatizer(plugin, "p", RUN.shapes, RUN.max_grad_norm, RUN.sampling_rate, 123, verifier=check)
    outputs, ledger = [], PrivacyLedger()
    for step, grads in enumerate(fake_gradients(RUN, steps, seed=5)):
        release = privatizer.release([MaterializedGradients(grads)], step, step // RUN.steps_per_epoch)
        outputs.append(release.gradient)
        ledger.append(release.record)
    return outputs, plugin, ledger


def test_probing_leaves_the_run_bitwise_unchanged():
    plain_outputs, plain_plugin, _ = train(NoisedMomentum, None, steps=8)
    probed_outputs, probed_plugin, _ = train(NoisedMomentum, verifier(), steps=8)
    for a, b in zip(plain_outputs, probed_outputs):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(plain_plugin.momentum, probed_plugin.momentum))


def test_schedule_probes_a_uniform_step_of_every_epoch_and_a_fraction_of_the_rest():
    check = verifier(probe_rate=0.1)
    probed = [s for s in range(3000) if check.should_probe(s, s // RUN.steps_per_epoch)]
    epochs = 3000 // RUN.steps_per_epoch
    offsets = [s % RUN.steps_per_epoch for s in range(epochs * RUN.steps_per_epoch) if check.epoch_step(s)]
    assert len(offsets) == epochs and all(s in probed for s in range(3000) if check.epoch_step(s))
    counts = [offsets.count(k) for k in range(RUN.steps_per_epoch)]  # about 3 per offset: not always the first
    assert max(counts) <= 12 and sum(c > 0 for c in counts) >= RUN.steps_per_epoch // 2
    others = len(probed) - len(offsets)
    assert 0.07 * 3000 < others < 0.13 * 3000
    resumed = verifier(probe_rate=0.1)
    resumed.load_state_dict(check.state_dict())
    assert probed == [s for s in range(3000) if resumed.should_probe(s, s // RUN.steps_per_epoch)]  # same on resume


def test_a_checkpoint_from_before_the_secret_schedule_still_resumes():
    check = verifier(probe_rate=0.1)
    train(FlatClipPlugin, check, steps=4)
    old = {k: v for k, v in check.state_dict().items() if k not in ("schedule_key", "epoch_probe_owed")}
    resumed = verifier(probe_rate=0.1)
    resumed.load_state_dict(old)
    assert resumed.report().to_dict()["steps_measured"] == check.report().to_dict()["steps_measured"]


def test_the_schedule_is_secret_not_a_function_of_the_run_seed():
    """A plugin that knows the run's seed (and the verifier's code) cannot compute which steps are probed:
    two verifiers built alike probe different steps."""
    one, two = verifier(probe_rate=0.1), verifier(probe_rate=0.1)
    assert [one.should_probe(s, 0) for s in range(1, 3000)] != [two.should_probe(s, 0) for s in range(1, 3000)]


def test_probing_off_is_unverified_and_accounts_the_claim():
    check = verifier(probe_rate=0.0)
    _, _, ledger = train(FlatClipPlugin, check, steps=4)
    assert check.report().verdict == "UNVERIFIED" and not check.report().probes
    assert check.verified_ledger(ledger) == ledger


def test_verified_ledger_carries_the_latest_probe_forward():
    check = verifier(probe_rate=0.0)
    check.probe_rate = 1.0
    check.should_probe = lambda step, epoch: step in (0, 50)  # probe a high- and a low-noise step only
    _, _, ledger = train(ScheduleReportedAsMean, check)
    first, second = check.report().probes
    assert first.passed and not second.passed and second.measured < 0.75
    verified = [r.noise_multiplier for r in check.verified_ledger(ledger)]
    assert verified[:50] == [r.noise_multiplier for r in ledger][:50]
    assert len(set(verified[50:])) == 1 and verified[50] == pytest.approx(second.measured, abs=0.011)
    assert all(v <= second.measured for v in verified[50:])


def test_strict_mode_raises_at_the_first_finding():
    with pytest.raises(PrivacyViolationError, match="step 2"):
        train(SkipsNoise, verifier(strict=True))
    with pytest.raises(PrivacyLeakError, match="clip_norm"):
        train(RawNormAdaptive, verifier(strict=True), steps=3)


def test_a_leak_has_no_verified_epsilon():
    check = verifier()
    _, _, ledger = train(RawNormAdaptive, check, steps=3)
    with pytest.raises(UnverifiableLedgerError):
        check.verified_ledger(ledger)
    result = epsilon_check(check, ledger, RUN.delta)
    assert result.verified.primary == float("inf") and result.to_dict()["verified"]["primary"] is None


def test_report_is_json_and_state_round_trips_through_a_checkpoint():
    check = verifier(probe_rate=0.2)
    _, _, ledger = train(ScheduleReportedAsMean, check)
    report = check.report()
    json.dumps({"verification": report.to_dict(), "epsilon": epsilon_check(check, ledger, RUN.delta).to_dict()}, allow_nan=False)
    restored = verifier(probe_rate=0.2)
    buffer = io.BytesIO()
    torch.save(check.state_dict(), buffer)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    assert restored.report().to_dict() == report.to_dict()
    assert restored.verified_ledger(ledger) == check.verified_ledger(ledger)


def test_overhead_budget_skips_scheduled_probes_but_always_probes_the_epochs_step():
    check = verifier(probe_rate=0.99, max_overhead=1e-6)
    steps = RUN.steps_per_epoch
    train(FlatClipPlugin, check, steps=steps)
    report = check.report()
    (epoch_step,) = [s for s in range(steps) if check.epoch_step(s)]
    probes = [p.step for p in report.probes]
    scheduled = [s for s in range(probes[0] + 1, steps) if check.should_probe(s, 0) and s != epoch_step]
    assert epoch_step in probes and probes[0] <= epoch_step
    assert probes == sorted({probes[0], epoch_step})
    assert report.settings["skipped_for_budget"] == len(scheduled) > 0 and "skipped" in report.confidence
