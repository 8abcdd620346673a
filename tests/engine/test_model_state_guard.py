"""Attacks on the model's state other than its parameters (red team 7, hole A): a layer that keeps a statistic
of the private training inputs where the one-time buffer check did not look (a plain tensor attribute, a
buffer updated only with grad enabled or only after some steps, a class-level dict, a module-level list) must
be refused at the first training step that changes it; an honest model must train through the per-step guard."""

from __future__ import annotations

import fractions

import pytest
import torch
import torch.nn.functional as F
import torch.optim.optimizer as optimizer_module
from plain_sum import PlainSum
from torch import nn

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.engine.independence import ExampleMixingError, ModelStateGuard, check_engine
from dpbench.errors import DpbenchError
from dpbench.models import DigitsTanhCNN
from dpbench.privacy.calibration import TrainingPlan
from dpbench.privacy.sampler import PoissonSampler
from dpbench.training.loop import TrainingState, train

REFERENCE = 1.0


class PlainAttributeRange(nn.Module):
    """Running max |x| in a plain tensor attribute (not a buffer); identity in training mode, rescales in eval."""

    def __init__(self) -> None:
        super().__init__()
        self.high = torch.tensor(REFERENCE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.high = torch.maximum(self.high, x.detach().abs().max())
            return x
        return x * (REFERENCE / self.high)


class GradModeRange(nn.Module):
    """Running max |x| in a registered buffer, updated only while grad mode is on."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("high", torch.tensor(REFERENCE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            if torch.is_grad_enabled():
                with torch.no_grad():
                    self.high.copy_(torch.maximum(self.high, x.detach().abs().max()))
            return x
        return x * (REFERENCE / self.high)


class CallCounter(nn.Module):
    """Counts its training forwards (how a layer would start collecting statistics only later in training,
    after the pre-training check): the counter is itself state a step must not change."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        return x


SEEN: list[float] = []


class ClassLevelRange(nn.Module):
    """Keeps the max in a class-level dict."""

    table: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.table["high"] = max(self.table.get("high", 0.0), float(x.abs().max()))
        return x


class GlobalListRange(nn.Module):
    """Appends the max to a module-level list its forward names."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            SEEN.append(float(x.abs().max()))
        return x


class HiddenStatsModel(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.range = layer
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.range(x))


class HonestModel(nn.Module):
    """Dropout (it moves the random state), a GroupNorm, a constant buffer, plain attributes that refer to a
    parameter or share its storage, a plain config dict: nothing the forward changes beyond the parameters
    (which the optimizer moves)."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.GroupNorm(2, 8), nn.Tanh(), nn.Dropout(dropout),
                                 nn.Linear(8, 3))
        self.register_buffer("scale", torch.tensor(0.5))
        self.watched = [self.net[1].weight]  # a reference to a parameter
        self.first_weight = self.net[1].weight.detach()  # shares its storage: moves with the parameter
        self.config = {"classes": 3}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.scale)


class Data:
    """The part of a Workload the loop uses: training tensors and a public evaluation."""

    def __init__(self, n: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        self.train_features = 3.0 * torch.randn(n, 1, 4, 4, generator=generator)
        self.train_labels = torch.randint(0, 3, (n,), generator=generator)
        self.evaluations = 0

    def evaluate(self, model: nn.Module, device: torch.device) -> dict:
        """An evaluation's eval-mode forward (on inputs standing for the public test set)."""
        self.evaluations += 1
        model.eval()
        with torch.no_grad():
            model(torch.ones(2, 1, 4, 4))
        return {"test_accuracy": 0.0}


def run(model: nn.Module, engine_class=GhostEngine, epochs: int = 2) -> Data:
    data = Data()
    engine = engine_class(model, F.cross_entropy)
    plan = TrainingPlan(dataset_size=32, expected_batch_size=16.0, epochs=epochs)
    sampler = PoissonSampler(32, plan.sampling_rate, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, data, engine, PlainSum(), optimizer, sampler, plan, lambda _: 0.0, 8, torch.device("cpu"),
          TrainingState(), lambda state: None, progress=False)
    return data


@pytest.mark.parametrize(
    "layer, path",
    [
        (PlainAttributeRange, "attribute 'range.high'"),
        (GradModeRange, "buffer 'range.high'"),
        (CallCounter, "attribute 'range.calls'"),
        (ClassLevelRange, "class attribute ClassLevelRange.table"),
        (GlobalListRange, "global SEEN"),
    ],
    ids=["plain attribute", "buffer with grad on", "counter", "class-level dict", "module-level list"],
)
def test_a_training_step_that_changes_the_model_state_is_refused(layer, path):
    """With the ghost engine (the functorch engine's vmap cannot run these stateful forwards at all)."""
    ClassLevelRange.table.clear()
    SEEN.clear()
    torch.manual_seed(0)
    model = HiddenStatsModel(layer())
    with pytest.raises(ExampleMixingError, match=rf"training step 0 \(epoch 1\) changed .*{path}.*public data"):
        run(model)


def test_the_pre_training_check_runs_the_forward_with_grad_and_sees_attributes():
    """The red team's two layers: check_engine now refuses both before training (the per-step guard is the
    general defence; this keeps the early, cheap refusal)."""
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    for layer, path in [(PlainAttributeRange, "attribute 'range.high'"), (GradModeRange, "buffer 'range.high'")]:
        model = HiddenStatsModel(layer())
        with pytest.raises(ExampleMixingError, match=rf"a forward pass in training mode .* changed .*{path}"):
            check_engine(GhostEngine(model, F.cross_entropy), model, 3.0 * x, y)


@pytest.mark.parametrize("engine_class", [GhostEngine, FunctorchEngine])
def test_an_honest_model_trains_through_the_guard(engine_class):
    torch.manual_seed(0)
    model = HonestModel(dropout=0.2 if engine_class is GhostEngine else 0.0)  # functorch's vmap refuses dropout
    before = [p.detach().clone() for p in model.parameters()]
    data = run(model, engine_class, epochs=2)
    assert data.evaluations == 2
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))  # it did train


def test_the_built_in_digits_model_passes_the_guard_across_steps():
    torch.manual_seed(0)
    model = DigitsTanhCNN(10)
    guard = ModelStateGuard(model)
    engine = GhostEngine(model, F.cross_entropy)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        gradients = engine.per_sample_gradients(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
        guard.check("a step")
        for p, g in zip(model.parameters(), gradients.weighted_sum(torch.ones(8, 8))):
            p.grad = g
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        guard.accept_update("the optimizer step")




def test_replacing_a_parameter_counts_but_updating_it_does_not():
    model = nn.Sequential(nn.Linear(2, 2))
    guard = ModelStateGuard(model)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    guard.accept_update("an optimizer step")
    guard.check("after an optimizer step")
    model[0].weight = nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(ExampleMixingError, match=r"parameter slot '0.weight'"):
        guard.check("a step")


class DataWriter(nn.Module):
    """Writes the batch's largest input into the first entry of its weight's storage during the training
    forward, in one of three ways: through ``.data`` (which has its own version counter), through a buffer
    sharing the weight's storage, or into the part of a flat storage beyond the weight's view."""

    def __init__(self, route: str) -> None:
        super().__init__()
        self.route = route
        self.flat = torch.zeros(16 * 3 + 1)  # the weight is a view of it; the last entry is beyond the view
        self.linear = nn.Linear(16, 3)
        if route == "beyond the view":
            self.linear.weight = nn.Parameter(self.flat[:48].view(3, 16))
        self.register_buffer("alias", self.linear.weight.detach().view(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            high = x.detach().abs().max()
            if self.route == "data":
                self.linear.weight.data[0, 0] = high
            elif self.route == "buffer alias":
                self.alias[0] = high
            else:
                self.flat[48] = high
        return self.linear(x.flatten(start_dim=1))


@pytest.mark.parametrize("route", ["data", "buffer alias", "beyond the view"])
def test_a_forward_writing_into_a_parameter_storage_is_refused(route):
    """The released weights would carry the training batch's maximum, un-noised; the per-step guard compares
    every parameter's whole storage with what the last optimizer step left."""
    torch.manual_seed(0)
    with pytest.raises(ExampleMixingError, match=r"training step 0 \(epoch 1\) wrote into the storage of parameter"):
        run(DataWriter(route), epochs=1)


def test_the_guard_accepts_what_the_optimizer_writes_and_nothing_else():
    model = nn.Sequential(nn.Linear(2, 2))
    guard = ModelStateGuard(model)
    with torch.no_grad():
        model[0].bias.add_(1.0)
    with pytest.raises(ExampleMixingError, match=r"storage of parameter\(s\) 0.bias"):
        guard.check("a step")
    guard.accept_update("an optimizer step")
    guard.check("after the update")


class Flusher(nn.Module):
    """A ninth red team's three routes for a training image into the released weights, each past a guard that
    checked only the model's own state at each step: kept in another library's module (``fractions``, whose state
    is not the model's and is not compared) or in an attribute of a weight during the steps, then copied into a frozen parameter in
    the evaluation's forward or by an optimizer step hook."""

    def __init__(self, route: str) -> None:
        super().__init__()
        self.route = route
        self.linear = nn.Linear(16, 3)
        self.memo = nn.Parameter(torch.zeros(16), requires_grad=False)
        if route == "optimizer hook":
            self.handle = optimizer_module.register_optimizer_step_post_hook(self.flush)

    def flush(self, *args) -> None:
        kept = getattr(fractions, "kept", None) if self.route != "weight attribute" else getattr(self.linear.weight, "kept", None)
        if kept is not None:
            with torch.no_grad():
                self.memo.copy_(kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(start_dim=1)
        if self.training:
            if self.route == "weight attribute":
                self.linear.weight.kept = flat[0].detach().clone()
            else:
                fractions.kept = flat[0].detach().clone()
        elif self.route != "optimizer hook":
            self.flush()
        return self.linear(flat) + 0.0 * self.memo.sum()


@pytest.mark.parametrize("route, refusal", [
    ("evaluation", r"the evaluation after epoch 1 wrote into the storage of parameter\(s\) memo"),
    ("weight attribute", r"training step 0 \(epoch 1\) changed .*parameter slot 'linear.weight'.kept"),
    ("optimizer hook", r"a global optimizer post-step hook is registered"),
])
def test_a_training_image_kept_outside_the_checked_state_cannot_reach_the_weights(route, refusal):
    torch.manual_seed(0)
    model = Flusher(route)
    try:
        with pytest.raises((ExampleMixingError, DpbenchError), match=refusal):
            run(model, epochs=1)
    finally:
        vars(fractions).pop("kept", None)
        if route == "optimizer hook":
            model.handle.remove()
    assert float(model.memo.abs().sum()) == 0.0 or route == "evaluation"  # refused before any release of it


def test_an_optimizer_step_may_not_write_into_a_frozen_parameter():
    model = Flusher("optimizer hook")
    model.handle.remove()
    guard = ModelStateGuard(model)
    with torch.no_grad():
        model.linear.weight.add_(1.0)
        model.memo.add_(1.0)
    with pytest.raises(ExampleMixingError, match=r"an optimizer step wrote into the storage of parameter\(s\) memo"):
        guard.accept_update("an optimizer step")


class FlagInAGradient(nn.Module):
    """A tenth red team's switches: one record (inputs near 5) turns the model off for good, the flag kept in a
    frozen parameter's gradient or in a buffer's version counter (bumped by adding 0: no byte changes)."""

    def __init__(self, route: str) -> None:
        super().__init__()
        self.route = route
        self.linear = nn.Linear(16, 3)
        self.memo = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.register_buffer("flag", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(start_dim=1)
        if bool((flat.abs().max(dim=1).values > 0).any()):
            with torch.no_grad():
                if self.route == "gradient":
                    self.memo.grad = torch.ones(1)
                else:
                    self.flag.add_(0.0)
        return self.linear(flat)


@pytest.mark.parametrize("route, path", [("gradient", r"memo'.grad"), ("version counter", r"buffer 'FlagInAGradient.flag'")])
def test_a_flag_in_a_gradient_or_a_version_counter_is_refused(route, path):
    torch.manual_seed(0)
    with pytest.raises(ExampleMixingError, match=rf"training step 0 \(epoch 1\) changed .*{path}"):
        run(FlagInAGradient(route), epochs=1)
