"""An example whose gradient is not finite contributes nothing, and its presence cannot stop the run.

The attack: one poisoned example (an input that overflows the forward pass, or holds NaN) used to make the
kernel refuse the step, so whether a run (or a search trial) finished told whether that example was in the
data. Now the release with the poisoned example equals the release without it, and the run finishes; a run
whose *parameters* diverge (a function of releases only) is still stopped.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from plain_sum import PlainSum
from torch import nn

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.errors import DpbenchError
from dpbench.privacy.calibration import TrainingPlan
from dpbench.privacy.finite_examples import finite_examples
from dpbench.privacy.sampler import PoissonSampler
from dpbench.training.loop import TrainingState, train

POISONS = {"overflow": 1e30, "inf": math.inf, "nan": math.nan}


class Square(nn.Module):
    """A layer through which a large but finite input overflows float32 (as a VAE's exp of a log-variance can)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 4), Square(), nn.Linear(4, 3))


def batch(n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 2, 3, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def summed(chunk) -> list[torch.Tensor]:
    return chunk.weighted_sum(torch.ones(chunk.batch_size, chunk.squared_norms().shape[1], dtype=torch.float64))


@pytest.mark.parametrize("poison", POISONS)
@pytest.mark.parametrize("engine_class", [GhostEngine, FunctorchEngine])
def test_a_non_finite_example_leaves_the_release_as_if_it_were_absent(engine_class, poison):
    net = model()
    engine = engine_class(net, F.cross_entropy)
    shapes = [p.shape for p in net.parameters()]
    x, y = batch()
    poisoned = x.clone()
    poisoned[2] = POISONS[poison]
    assert not torch.isfinite(engine.per_sample_gradients(poisoned, y).squared_norms()).all()  # the attack bites
    with_it = finite_examples(engine.per_sample_gradients, poisoned, y, shapes)
    keep = torch.tensor([0, 1, 3, 4])
    without = finite_examples(engine.per_sample_gradients, x[keep], y[keep], shapes)
    assert with_it.batch_size == 4
    assert torch.equal(with_it.squared_norms(), without.squared_norms())
    for a, b in zip(summed(with_it), summed(without)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert all(torch.isfinite(g).all() for g in with_it.materialize())


def test_a_batch_of_only_non_finite_examples_contributes_zero():
    net = model()
    shapes = [p.shape for p in net.parameters()]
    x, y = batch(2)
    x[:, 0, 0, 0] = math.nan
    chunk = finite_examples(GhostEngine(net, F.cross_entropy).per_sample_gradients, x, y, shapes)
    assert chunk.batch_size == 0 and chunk.squared_norms().shape == (0, len(shapes))
    assert all(float(g.abs().sum()) == 0.0 and g.shape == s for g, s in zip(summed(chunk), shapes))


def test_finite_batches_pass_unchanged_with_their_norms_computed_once():
    net = model()
    engine = GhostEngine(net, F.cross_entropy)
    x, y = batch()
    chunk = finite_examples(engine.per_sample_gradients, x, y, [p.shape for p in net.parameters()])
    assert chunk.squared_norms() is chunk.squared_norms()
    torch.testing.assert_close(chunk.squared_norms(), engine.per_sample_gradients(x, y).squared_norms())


class Data:
    def __init__(self, poisoned: bool) -> None:
        self.train_features, self.train_labels = batch(16)
        if poisoned:
            self.train_features[:] = 1e30  # every example overflows: every step releases zero
        self.evaluations = 0

    def evaluate(self, net: nn.Module, device: torch.device) -> dict:
        self.evaluations += 1
        return {"test_accuracy": 0.0}


def run(data: Data, privatizer: PlainSum, lr: float = 0.1) -> nn.Module:
    net = model()
    plan = TrainingPlan(dataset_size=16, expected_batch_size=8.0, epochs=2)
    train(net, data, GhostEngine(net, F.cross_entropy), privatizer, torch.optim.SGD(net.parameters(), lr=lr),
          PoissonSampler(16, plan.sampling_rate, seed=0), plan, lambda _: 0.0, 4, torch.device("cpu"),
          TrainingState(), lambda state: None, progress=False)
    return net


def test_a_run_over_poisoned_examples_finishes():
    data, privatizer = Data(poisoned=True), PlainSum()
    before = [p.detach().clone() for p in model().parameters()]
    net = run(data, privatizer)
    assert data.evaluations == 2 and set(privatizer.sizes) == {0}
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # nothing of them was released


def test_diverged_parameters_stop_the_run_with_the_fix():
    with pytest.raises(DpbenchError, match=r"training diverged at step 0.*lower train.lr"):
        run(Data(poisoned=False), PlainSum(scale=1e30), lr=1e30)


def test_the_other_examples_keep_their_dropout_masks():
    """A tenth red team's honest dropout model: a second pass over a smaller batch drew other masks, under which a
    near-overflowing example could overflow in turn and stop the run. The second pass now replays the first's random
    state over a batch of the same shape, so every other example's gradient is exactly the first pass's."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    engine = GhostEngine(net, F.cross_entropy)
    x, y = batch(6)
    x[3] = math.nan
    torch.manual_seed(7)
    first = [g.clone() for g in engine.per_sample_gradients(x, y).materialize()]
    torch.manual_seed(7)
    chunk = finite_examples(engine.per_sample_gradients, x, y, [p.shape for p in net.parameters()])
    keep = torch.tensor([0, 1, 2, 4, 5])
    for again, before in zip(chunk.materialize(), first):
        assert torch.equal(again, before[keep])
    ones = torch.ones(5, chunk.squared_norms().shape[1], dtype=torch.float64)
    for total, before in zip(chunk.weighted_sum(ones), first):
        torch.testing.assert_close(total, before[keep].sum(0), rtol=1e-5, atol=1e-6)


def test_the_recorded_throughput_does_not_count_the_examples_left_out():
    """``samples_per_second`` counts the Poisson sample drawn, so it says nothing of how many were left out."""
    counts = []
    for poisoned in (False, True):
        net, state = model(), TrainingState()
        plan = TrainingPlan(dataset_size=16, expected_batch_size=8.0, epochs=1)
        train(net, Data(poisoned), GhostEngine(net, F.cross_entropy), PlainSum(), torch.optim.SGD(net.parameters(), lr=0.0),
              PoissonSampler(16, plan.sampling_rate, seed=0), plan, lambda _: 0.0, 4, torch.device("cpu"),
              state, lambda state: None, progress=False)
        counts.append(round(state.epochs[0]["samples_per_second"] * state.epochs[0]["seconds"]))
    assert counts[0] == counts[1] > 0
