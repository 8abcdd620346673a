"""Adaptive clipping: the count and gradient noise follow Andrew et al.'s split, the ledger records the
joint multiplier, the threshold moves only with the noised count, and impossible splits are refused."""

import json
import math

import pytest
import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.accountant import epsilon
from dpbench.privacy.isolation import IsolationError
from dpbench.privacy.ledger import PrivacyLedger, StepRecord
from dpbench.privacy.mechanism import MechanismContractError
from dpbench.privacy.privatizer import StructuredPrivatizer
from dpbench.training.checkpoint import read_checkpoint
from dpbench.training.experiment import run_experiment
from mechanisms.adaptive import RESCALED_FLOOR, AdaptiveClipping
from mechanisms.fixed import FixedClipping

SHAPES = [torch.Size([6, 4]), torch.Size([4])]
EXPECTED_BATCH = 10.0


def grads(norm_scale: float, size: int = 10, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [norm_scale * torch.randn((size, *s), generator=generator) for s in SHAPES]


def privatizer(mechanism, z: float, seed: int) -> StructuredPrivatizer:
    return StructuredPrivatizer(mechanism, SHAPES, z, EXPECTED_BATCH, 0.01, torch.Generator().manual_seed(seed))


def andrew_gradient_multiplier(z: float, sigma_b: float) -> float:
    """Andrew et al. 2021, Theorem 1: sigma_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)."""
    return 1.0 / math.sqrt(1.0 / z**2 - 1.0 / (2.0 * sigma_b) ** 2)


def test_gradient_noise_is_raised_by_andrews_formula_and_ledger_records_z():
    z, sigma_b, clip = 1.2, 1.5, 0.7
    outputs, records = [], []
    for seed in range(400):
        mechanism = AdaptiveClipping(clip, count_noise=sigma_b)
        release = privatizer(mechanism, z, seed).release([MaterializedGradients(grads(0.0))], 0, 0)
        outputs.append(torch.cat([g.flatten() for g in release.gradient]))
        records.append(release.record)
    measured_std = float(torch.stack(outputs).std(dim=0).mean())
    assert measured_std == pytest.approx(andrew_gradient_multiplier(z, sigma_b) * clip / EXPECTED_BATCH, rel=0.04)
    assert all(r.noise_multiplier == pytest.approx(z, rel=1e-9) and r.sensitivity == clip for r in records)


def test_threshold_moves_only_through_the_noised_count():
    z, sigma_b = 1.0, 2.0
    updates = []
    for seed in range(300):
        mechanism = AdaptiveClipping(1.0, target_quantile=0.5, learning_rate=1.0, count_noise=sigma_b)
        privatizer(mechanism, z, seed).release([MaterializedGradients(grads(100.0))], 0, 0)  # all clipped: b_i = 0
        updates.append(math.log(mechanism.clip_norm))
    updates = torch.tensor(updates)
    # log C' = -eta (b - gamma) with b = (sum(b_i - 1/2) + N(0, sigma_b^2)) / B + 1/2 = noise / B
    assert float(updates.mean()) == pytest.approx(0.5, abs=4 * sigma_b / EXPECTED_BATCH / math.sqrt(300))
    assert float(updates.std()) == pytest.approx(sigma_b / EXPECTED_BATCH, rel=0.12)


def test_threshold_tracks_the_quantile_on_average():
    mechanism = AdaptiveClipping(1e-3, target_quantile=0.5, learning_rate=0.2, count_noise=5.0)
    kernel = StructuredPrivatizer(mechanism, SHAPES, 1.0, 200.0, 0.2, torch.Generator().manual_seed(0))
    for step in range(300):
        kernel.release([MaterializedGradients(grads(1.0, size=200, seed=step))], step, 0)
    norms = torch.cat([g.flatten(1) for g in grads(1.0, size=2000, seed=999)], dim=1).norm(dim=1)
    assert mechanism.clip_norm == pytest.approx(float(norms.median()), rel=0.2)


def test_ledger_epsilon_equals_a_gaussian_with_the_joint_multiplier():
    z, sigma_b = 1.1, 3.0
    mechanism = AdaptiveClipping(1.0, count_noise=sigma_b)
    kernel = privatizer(mechanism, z, 0)
    ledger = PrivacyLedger(kernel.release([MaterializedGradients(grads(1.0, seed=t))], t, 0).record for t in range(50))
    z_g = andrew_gradient_multiplier(z, sigma_b)
    joint = 1.0 / math.sqrt(z_g**-2 + (2 * sigma_b) ** -2)
    reference = PrivacyLedger(StepRecord(t, 0, 0.01, joint, 1.0, "ref", "harness") for t in range(50))
    assert epsilon(ledger, 1e-5) == pytest.approx(epsilon(reference, 1e-5), rel=1e-6)


def test_count_noise_too_small_for_the_budget_is_refused():
    with pytest.raises(MechanismContractError, match="must exceed the total noise multiplier"):
        privatizer(AdaptiveClipping(1.0, count_noise=0.5), z=1.2, seed=0)


@pytest.mark.parametrize("kwargs", [{"target_quantile": 1.5}, {"learning_rate": 0.0}, {"count_noise": -1.0}])
def test_invalid_hyper_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        AdaptiveClipping(1.0, **kwargs)


class GrowingNoiseAdaptive(AdaptiveClipping):
    """Adaptive clipping whose noise schedule grows: the split is possible at step 0, not later."""

    def noise_shape(self, step, epoch):
        return 1.0 + epoch


def test_a_split_impossible_later_in_the_schedule_is_refused_before_training():
    kernel = privatizer(GrowingNoiseAdaptive(1.0, count_noise=1.0), z=1.2, seed=0)  # 2 sigma_b = 2 > 1.2 at epoch 0
    with pytest.raises(MechanismContractError, match="must exceed the total noise multiplier"):
        kernel.check_schedule((t, t // 10) for t in range(30))  # epoch 1: z = 2.4 >= 2


def test_each_epoch_records_the_bound_its_last_step_was_noised_for(make_config, tmp_path):
    """metrics.jsonl's ``sensitivity`` is the ledger's S at each epoch's last step: the adaptive threshold as it
    moved (from 0.01, far under the digits model's norms, upwards), and fixed's constant C."""

    for name, bound in (("adaptive", 0.01), ("fixed", 0.01)):
        run_dir = tmp_path / name
        run_experiment(make_config(f"mechanism={name}", "train.max_grad_norm=0.01"), run_dir)
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        ledger = read_checkpoint(run_dir / "checkpoint.pt")["state"]["ledger"]
        last_steps = {record["epoch"]: StepRecord(**record) for record in ledger}
        assert [row["sensitivity"] for row in metrics] == [last_steps[e].sensitivity for e in sorted(last_steps)]
        if name == "fixed":
            assert all(row["sensitivity"] == pytest.approx(bound) for row in metrics)
        else:
            assert metrics[0]["sensitivity"] > bound and metrics[1]["sensitivity"] > metrics[0]["sensitivity"]


def test_when_every_example_is_clipped_the_threshold_only_scales_the_step():
    """Why the threshold's level matters as much as its adaptivity (docs/benchmarks.md, tuned eps3_vision): when
    every example's norm exceeds C, the release (clipped sum plus N(0, (z C)^2), over B) is C times a quantity
    that does not depend on C, so C is a multiplier of the learning rate. A threshold that moves from the preset's
    0.1 to a quantile of norms 50x larger multiplies the step by 50."""
    large = grads(norm_scale=100.0)  # every example's norm is far above both thresholds
    releases = []
    for threshold in (0.1, 5.0):
        kernel = privatizer(FixedClipping(threshold), z=3.0, seed=7)
        releases.append(kernel.release([MaterializedGradients(large)], 0, 0).gradient)
    for small, big in zip(*releases):
        torch.testing.assert_close(big, 50.0 * small)
    small = grads(norm_scale=0.1)  # norms about 0.5: above C = 0.1, under C = 5
    unclipped = [privatizer(FixedClipping(c), z=3.0, seed=7).release([MaterializedGradients(small)], 0, 0).gradient
                 for c in (0.1, 5.0)]
    assert not torch.allclose(unclipped[1][0], 50.0 * unclipped[0][0])  # outside that regime it is not a scale


def test_rescaled_step_is_the_plain_release_times_initial_over_applied_threshold():
    """``rescale_step`` is post-processing only: at every step the release is Andrew et al.'s release of the
    same noise draw times C_0 / C_t, with C_t the threshold that step was clipped to (moved by the noised
    counts exactly as without rescaling), and the ledger records the same bound and multiplier."""
    initial = 0.05
    kernels = [
        privatizer(AdaptiveClipping(initial, learning_rate=1.0, count_noise=2.0, rescale_step=rescale), z=1.0, seed=3)
        for rescale in (False, True)
    ]
    moved = set()
    for step in range(20):
        batch = MaterializedGradients(grads(1.0, seed=step))
        applied = kernels[0].mechanism.clip_norm
        plain, rescaled = (kernel.release([batch], step, 0) for kernel in kernels)
        assert plain.record == rescaled.record and plain.record.sensitivity == pytest.approx(applied)
        for p, r in zip(plain.gradient, rescaled.gradient):
            torch.testing.assert_close(r, p * (initial / applied))
        assert kernels[1].mechanism.clip_norm == kernels[0].mechanism.clip_norm
        moved.add(round(applied, 12))
    assert len(moved) > 10  # the threshold moved, so the factor was exercised


def test_rescaled_step_does_not_depend_on_the_threshold_when_every_example_is_clipped():
    """What the rescaling is for: with every norm above C_t, the step is flat clipping's at C_0 whatever C_t
    is (the same noise draw, at C_t = C_0 and at C_t = 50 C_0)."""
    large = MaterializedGradients(grads(norm_scale=100.0))
    releases = []
    for threshold in (0.1, 5.0):
        mechanism = AdaptiveClipping(0.1, count_noise=10.0, rescale_step=True)
        mechanism.clip_norm = threshold
        releases.append(privatizer(mechanism, z=3.0, seed=7).release([large], 0, 0).gradient)
    for at_initial, at_fifty_times in zip(*releases):
        torch.testing.assert_close(at_fifty_times, at_initial)


def test_rescaled_threshold_stops_at_its_floor_and_the_step_stays_finite():
    """With every gradient exactly 0 (a saturated softmax), the count says everything is under C and C falls
    geometrically; the rescaled rule stops it at RESCALED_FLOOR * C_0, so C_0 / C_t stays finite."""
    mechanism = AdaptiveClipping(1.0, target_quantile=0.1, learning_rate=1.0, count_noise=10.0, rescale_step=True)
    kernel = privatizer(mechanism, z=1.0, seed=0)
    for step in range(100):
        release = kernel.release([MaterializedGradients(grads(0.0))], step, 0)
    assert mechanism.clip_norm == RESCALED_FLOOR
    assert all(torch.isfinite(g).all() for g in release.gradient)
    unfloored = AdaptiveClipping(1.0, target_quantile=0.1, learning_rate=1.0, count_noise=10.0)
    kernel = privatizer(unfloored, z=1.0, seed=0)
    for step in range(200):
        kernel.release([MaterializedGradients(grads(0.0))], step, 0)
    assert unfloored.clip_norm < RESCALED_FLOOR  # Andrew et al.'s rule, unchanged, has no floor


class RawMedianRescale(AdaptiveClipping):
    """The attack on the rescaled step: rescale by the batch's raw median norm instead of the released threshold,
    stored from the hook that sees the raw norms."""

    def clip_statistic(self, group_norms, thresholds, step, epoch):
        self.released_norm = float(group_norms[:, 0].median())
        return super().clip_statistic(group_norms, thresholds, step, epoch)


def test_a_rescale_by_raw_norms_is_refused():
    kernel = privatizer(RawMedianRescale(0.05, count_noise=2.0, rescale_step=True), z=1.0, seed=0)
    with pytest.raises(IsolationError):
        kernel.release([MaterializedGradients(grads(1.0))], 0, 0)
