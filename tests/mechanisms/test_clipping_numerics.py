"""The clipping bound survives the numerics: for per-example gradients that are tiny (float32 squares
underflow), huge (float32 squares overflow), infinite or NaN, every built-in and every adversarial
factor either contributes at most C_g per group (measured here in float64 from the contribution
itself) or the step is refused with a clear error. The ghost engine is attacked the same way through a
model whose inputs are scaled to 1e-24."""

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from test_adapted_builtins import structured_configs
from torch import nn

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.clipping import check_groups, clip_chunk, clipping_plan
from dpbench.privacy.mechanism import Mechanism
from mechanisms.normalized import AutomaticClipping

SHAPES = [torch.Size([4, 3]), torch.Size([3]), torch.Size([2, 2])]
C = 0.6


class Greedy(Mechanism):
    """Proposes the largest factor a float32 can hold."""

    name = "greedy"

    def clip_factors(self, group_norms, thresholds, step, epoch):
        return torch.full_like(group_norms, 3e38)


def mechanisms() -> dict[str, Mechanism]:
    built = {
        name: instantiate({k: v for k, v in config.items() if k != "name"}, _convert_="all")
        for name, config in structured_configs().items()
    }
    built["normalized, stability 1e-30"] = AutomaticClipping(C, stability=1e-30)
    built["greedy factors"] = Greedy(C)
    return built


MECHANISMS = mechanisms()


def group_contributions(mechanism: Mechanism, grads) -> tuple[list[float], list[float]]:
    """Each group's contribution norm (float64) for a batch of one, and the group's threshold."""
    groups = check_groups(mechanism.parameter_groups(SHAPES), len(SHAPES))
    plan = clipping_plan(mechanism, groups, 0, 0)
    contribution = clip_chunk(grads, mechanism, plan, 0, 0).gradient_sum
    norms = [math.sqrt(sum(float(contribution[i].double().pow(2).sum()) for i in group)) for group in groups]
    return norms, list(plan.thresholds)


@pytest.mark.parametrize("scale", [1e-24, 1e-40, 1e20, 1e30])
@pytest.mark.parametrize("name", MECHANISMS)
def test_extreme_gradients_stay_within_the_bound(name, scale):
    generator = torch.Generator().manual_seed(3)
    one = [scale * torch.randn((1, *s), generator=generator) for s in SHAPES]
    norms, thresholds = group_contributions(MECHANISMS[name], MaterializedGradients(one))
    assert all(n <= c for n, c in zip(norms, thresholds)), (norms, thresholds)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("name", MECHANISMS)
def test_non_finite_gradients_refuse_the_step(name, bad):
    one = [torch.ones((1, *s)) for s in SHAPES]
    one[1][0, 1] = bad
    with pytest.raises(FloatingPointError, match="non-finite per-sample gradient"):
        group_contributions(MECHANISMS[name], MaterializedGradients(one))


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


@pytest.mark.parametrize("engine_class", [GhostEngine, FunctorchEngine])
def test_engines_report_tiny_norms_exactly(engine_class):
    """Output gradients of 1e-24 (a loss scaled down): float32 squared norms would be 0 and automatic
    clipping at stability 1e-30 would then scale the example up by 1e30."""
    torch.manual_seed(0)
    model = TinyNet()

    def tiny_loss(output, label):
        return 1e-24 * F.cross_entropy(output, label, reduction="sum")

    x, y = torch.randn(3, 1, 4, 4), torch.tensor([0, 1, 2])
    grads = engine_class(model, tiny_loss).per_sample_gradients(x, y)
    reference = FunctorchEngine(model.double(), lambda o, t: F.cross_entropy(o, t, reduction="sum")).per_sample_gradients(
        x.double(), y
    )
    model.float()
    expected = reference.squared_norms() * 1e-48
    assert bool((grads.squared_norms() > 0).all())
    torch.testing.assert_close(grads.squared_norms(), expected, rtol=1e-4, atol=0.0)
    mechanism = AutomaticClipping(1.0, stability=1e-30)
    plan = clipping_plan(mechanism, ((0, 1, 2, 3),), 0, 0)
    for index in range(3):
        single = engine_class(model, tiny_loss).per_sample_gradients(x[index : index + 1], y[index : index + 1])
        contribution = clip_chunk(single, mechanism, plan, 0, 0).gradient_sum
        assert math.sqrt(sum(float(c.double().pow(2).sum()) for c in contribution)) <= 1.0
