"""The kernel's privacy claims, measured: clipped sensitivity, noise scale, enforcement of bounds.

Each test releases gradients on neighbouring batches (one batch plus a huge-norm example) and
compares the measured shift and noise against what the ledger records, computed independently
from the definition (not by calling the code under test)."""

import math

import pytest
import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.mechanism import Mechanism, MechanismContractError
from dpbench.privacy.privatizer import PluginPrivatizer, StructuredPrivatizer
from mechanisms.fixed import FixedClipping

SHAPES = [torch.Size([4, 3]), torch.Size([3]), torch.Size([2, 2, 2])]


def batch(size: int, seed: int, scale: float = 1.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [scale * torch.randn((size, *s), generator=generator) for s in SHAPES]


def add_example(grads: list[torch.Tensor], example: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.cat([g, e.unsqueeze(0)]) for g, e in zip(grads, example)]


def release(mechanism: Mechanism, grads: list[torch.Tensor], z: float, seed: int, expected_batch: float = 8.0):
    privatizer = StructuredPrivatizer(
        mechanism, SHAPES, z, expected_batch, 0.1, generator=torch.Generator().manual_seed(seed)
    )
    return privatizer.release([MaterializedGradients(grads)], step=0, epoch=0)


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


class PerTensorMechanism(Mechanism):
    """Each parameter tensor its own group, thresholds 1, 2, 3."""

    name = "per_tensor"

    def parameter_groups(self, parameter_shapes):
        return [[i] for i in range(len(parameter_shapes))]

    def thresholds(self, step, epoch):
        return [1.0, 2.0, 3.0]


class GreedyMechanism(Mechanism):
    """Proposes factors far above the bound: the kernel must enforce the threshold anyway."""

    name = "greedy"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        return torch.full_like(group_norms, 1e6)


@pytest.mark.parametrize(
    "mechanism, sensitivity",
    [(FixedClipping(0.5), 0.5), (PerTensorMechanism(1.0), math.sqrt(1 + 4 + 9)), (GreedyMechanism(0.5), 0.5)],
)
def test_one_huge_example_moves_the_sum_by_at_most_the_recorded_sensitivity(mechanism, sensitivity):
    grads = batch(7, seed=0)
    huge = [1e6 * t[0] for t in batch(1, seed=1)]
    common_noise_seed = 42  # identical noise on both sides: the difference is exactly the clipped example
    without = release(mechanism, grads, z=1.0, seed=common_noise_seed)
    with_huge = release(mechanism, add_example(grads, huge), z=1.0, seed=common_noise_seed)
    shift = float((flat(with_huge.gradient) - flat(without.gradient)).norm()) * 8.0  # undo the 1/B average
    assert with_huge.record.sensitivity == pytest.approx(sensitivity)
    assert shift == pytest.approx(sensitivity, rel=1e-4)  # a huge example saturates every group's bound


def test_noise_standard_deviation_is_multiplier_times_sensitivity_over_expected_batch():
    mechanism, z, expected = PerTensorMechanism(1.0), 1.7, 8.0
    grads = batch(5, seed=0)
    outputs = torch.stack([flat(release(mechanism, grads, z, seed=s).gradient) for s in range(400)])
    measured = float(outputs.std(dim=0).mean())
    assert measured == pytest.approx(z * math.sqrt(14.0) / expected, rel=0.03)
    records = {release(mechanism, grads, z, seed=s).record.noise_multiplier for s in range(3)}
    assert records == {z}


def test_empty_batch_still_releases_noise():
    out = release(FixedClipping(1.0), [torch.zeros((0, *s)) for s in SHAPES], z=1.0, seed=0)
    assert out.batch_size == 0
    assert float(flat(out.gradient).abs().sum()) > 0


def test_nan_gradient_is_refused_with_a_clear_error():
    grads = batch(4, seed=0)
    grads[1][2, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite per-sample gradient"):
        release(FixedClipping(1.0), grads, z=1.0, seed=0)


def test_groups_must_partition_the_parameters():
    class Overlapping(Mechanism):
        def parameter_groups(self, parameter_shapes):
            return [[0, 1], [1, 2]]

    with pytest.raises(MechanismContractError, match="partition"):
        release(Overlapping(1.0), batch(2, seed=0), z=1.0, seed=0)


def test_post_processing_with_wrong_shapes_is_refused():
    class BadPost(Mechanism):
        name = "bad_post"

        def postprocess(self, gradient, step, epoch):
            return [g.flatten() for g in gradient]

    with pytest.raises(MechanismContractError, match="shape"):
        release(BadPost(1.0), batch(2, seed=0), z=1.0, seed=0)


class RecordingPlugin:
    """A researcher-form plugin that keeps what it was handed and releases the plain sum."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def clip_and_noise(self, per_sample_grads: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]:
        self.seen = per_sample_grads
        return [g.sum(dim=0) for g in per_sample_grads]

    def get_effective_sigma(self, step: int, epoch: int) -> float:
        return 1.0


@pytest.mark.parametrize("chunk_sizes", [[7], [3, 4], [2, 0, 5], []])
def test_plugin_gets_the_whole_logical_batch_in_order_whatever_the_chunking(chunk_sizes):
    grads = batch(sum(chunk_sizes), seed=4)
    bounds = [sum(chunk_sizes[:i]) for i in range(len(chunk_sizes) + 1)]
    chunks = [MaterializedGradients([g[a:b] for g in grads], torch.ones(b - a)) for a, b in zip(bounds, bounds[1:])]
    plugin = RecordingPlugin()
    released = PluginPrivatizer(plugin, "recording", SHAPES, 1.0, 0.1, 0).release(iter(chunks), step=0, epoch=0)
    for seen, expected, shape in zip(plugin.seen, grads, SHAPES):
        assert seen.shape == (sum(chunk_sizes), *shape)
        torch.testing.assert_close(seen, expected, rtol=0, atol=0)
    assert released.batch_size == sum(chunk_sizes) and released.loss_sum == sum(chunk_sizes)
