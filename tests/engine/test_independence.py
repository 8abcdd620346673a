"""Attacks on example independence: layers that mix examples (known types are refused by name, unknown
ones are caught by the empirical check), running statistics updated from private data, and weights
used outside their module (tied weights), whose per-example norms the ghost rules would get wrong."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.engine.independence import ExampleMixingError, check_engine
from dpbench.models import Cifar10TanhCNN, DigitsTanhCNN, MnistTanhCNN, ScatterCNN, ScatterLinear

ENGINES = [GhostEngine, FunctorchEngine]


@pytest.mark.parametrize(
    "layer",
    [
        nn.BatchNorm1d(6, affine=False),
        nn.BatchNorm1d(6),
        nn.BatchNorm1d(6, track_running_stats=False),
        nn.SyncBatchNorm(6),
        nn.LazyBatchNorm1d(),
        nn.BatchNorm2d(6, affine=False),
        nn.BatchNorm3d(6, affine=False, track_running_stats=False),
        nn.LazyBatchNorm2d(affine=False),
        nn.InstanceNorm1d(6, track_running_stats=True),
        nn.InstanceNorm2d(6, affine=True, track_running_stats=True),
    ],
    ids=["batchnorm without parameters", "batchnorm", "batchnorm without running stats", "syncbatchnorm",
         "lazy batchnorm", "batchnorm2d without parameters", "batchnorm3d without anything", "lazy batchnorm2d",
         "instancenorm with running stats", "instancenorm2d with running stats"],
)
@pytest.mark.parametrize("engine_class", ENGINES)
def test_known_batch_mixing_layers_are_refused_by_name(engine_class, layer):
    model = nn.Sequential(nn.Linear(4, 6), layer, nn.Linear(6, 3))
    with pytest.raises(ExampleMixingError, match=r"module '1' \(\w+\)"):
        engine_class(model, F.cross_entropy)


class CentreOverBatch(nn.Module):
    """Subtracts the batch mean: no parameters, no known type."""

    def forward(self, x):
        return x - x.mean(dim=0, keepdim=True)


class ScaledByBatch(nn.Module):
    """A linear layer whose output is scaled by a statistic of the whole batch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 6)

    def forward(self, x):
        out = self.linear(x)
        return out / (1.0 + out.detach().pow(2).mean())


class RunningMean(nn.Module):
    """Per-example computation, but a running mean of private inputs kept in a buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("running", torch.zeros(6))

    def forward(self, x):
        if self.training:
            self.running.mul_(0.9).add_(0.1 * x.detach().mean(dim=0))
        return x


def data(n: int = 6):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=generator), torch.tensor([0, 1, 2, 0, 1, 2])[:n]


@pytest.mark.parametrize("layer", [CentreOverBatch(), ScaledByBatch()], ids=["batch mean", "batch statistic"])
def test_unknown_layers_that_mix_examples_are_caught_before_training(layer):
    torch.manual_seed(0)  # the batch statistic's effect on the others' gradients depends on the initialisation
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), layer, nn.Linear(6, 3))
    with pytest.raises(ExampleMixingError, match="replacing one example changed other examples' gradients"):
        check_engine(GhostEngine(model, F.cross_entropy), model, *data())


def test_running_statistics_of_private_data_are_refused_and_restored():
    model = nn.Sequential(nn.Linear(4, 6), RunningMean(), nn.Linear(6, 3))
    with pytest.raises(ExampleMixingError, match="changed the model's state other than its parameters: buffer '1.running'"):
        check_engine(GhostEngine(model, F.cross_entropy), model, *data())
    assert torch.equal(model[1].running, torch.zeros(6))


class TiedEmbedding(nn.Module):
    """A weight used by its module and again outside it (tied input/output embeddings)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 6, bias=False)
        self.hidden = nn.Linear(6, 4)

    def forward(self, x):
        h = torch.tanh(self.hidden(torch.tanh(self.embed(x))))
        return F.linear(h, self.embed.weight)[:, :3]


def test_tied_weights_would_get_wrong_norms_and_are_refused():
    torch.manual_seed(0)
    model = TiedEmbedding()
    x, y = data()
    ghost = GhostEngine(model, F.cross_entropy).per_sample_gradients(x, y).squared_norms()
    exact = FunctorchEngine(model, F.cross_entropy).per_sample_gradients(x, y).squared_norms()
    assert not torch.allclose(ghost[:, 0], exact[:, 0], rtol=1e-2)  # the silent error this check exists for
    with pytest.raises(ExampleMixingError, match="squared norm for parameter 'embed.weight' differ from autograd"):
        check_engine(GhostEngine(model, F.cross_entropy), model, x, y)
    check_engine(FunctorchEngine(model, F.cross_entropy), model, x, y)  # exact: accepted


@pytest.mark.slow
@pytest.mark.parametrize(
    "build, shape",
    [
        (DigitsTanhCNN, (1, 8, 8)),
        (MnistTanhCNN, (1, 28, 28)),
        (Cifar10TanhCNN, (3, 32, 32)),
        (lambda: Cifar10TanhCNN(group_norm_groups=8), (3, 32, 32)),
        (lambda: ScatterLinear(channels=81, height=7, width=7), (81, 7, 7)),
        (lambda: ScatterCNN(channels=243), (243, 8, 8)),
    ],
    ids=["digits", "mnist", "cifar10", "cifar10 groupnorm", "scatter linear", "scatter cnn"],
)
@pytest.mark.parametrize("engine_class", ENGINES)
def test_the_built_in_models_pass(engine_class, build, shape):
    torch.manual_seed(0)
    model = build()
    features, labels = torch.randn(5, *shape), torch.tensor([0, 1, 2, 3, 4])
    check_engine(engine_class(model, F.cross_entropy), model, features, labels)


def test_the_refusal_names_the_module_path_and_the_fix():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, affine=False)), nn.Flatten())
    with pytest.raises(ExampleMixingError, match=r"module '0.1' \(BatchNorm2d\).*nn.GroupNorm"):
        GhostEngine(model, F.cross_entropy)
    with pytest.raises(ExampleMixingError, match="track_running_stats=False"):
        FunctorchEngine(nn.Sequential(nn.InstanceNorm1d(4, track_running_stats=True)), F.cross_entropy)


@pytest.mark.parametrize(
    "layer", [nn.GroupNorm(2, 2), nn.LayerNorm(3), nn.InstanceNorm1d(2, affine=True)],
    ids=["groupnorm", "layernorm", "instancenorm without running stats"],
)
@pytest.mark.parametrize("engine_class", ENGINES)
def test_per_example_normalisation_is_accepted(engine_class, layer):
    model = nn.Sequential(nn.Linear(4, 6), nn.Unflatten(1, (2, 3)), layer, nn.Flatten(), nn.Linear(6, 3))
    check_engine(engine_class(model, F.cross_entropy), model, *data())


class FromNextExample(nn.Module):
    """Adds the next example's activations (none for the last one): replacing the first example moves no
    other example's output; adding one moves the last example's."""

    def forward(self, x):
        return x + torch.cat([x[1:], torch.zeros_like(x[:1])])


class ScaledByBatchSize(nn.Module):
    """Divides by the batch size: every example's gradient depends on how many others there are."""

    def forward(self, x):
        return x * (4.0 / x.shape[0])


@pytest.mark.parametrize(
    "engine_class, layer, message",
    [
        (GhostEngine, FromNextExample(), "changed other examples' gradients"),
        (GhostEngine, ScaledByBatchSize(), "adding one example changed"),  # replacing one cannot see it
        (FunctorchEngine, FromNextExample(), "mixes examples"),
        (FunctorchEngine, ScaledByBatchSize(), "mixes examples"),
    ],
    ids=["ghost next example", "ghost batch size", "functorch next example", "functorch batch size"],
)
def test_dependence_on_later_examples_and_on_the_batch_size_is_caught(engine_class, layer, message):
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), layer, nn.Linear(6, 3))
    with pytest.raises(ExampleMixingError, match=message):
        check_engine(engine_class(model, F.cross_entropy), model, *data())


def test_dropout_is_no_false_alarm_and_does_not_hide_a_batch_size_dependence():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 6), nn.Dropout(0.3),
                          nn.Linear(6, 3))
    check_engine(GhostEngine(model, F.cross_entropy), model, *data())
    model.insert(3, ScaledByBatchSize())
    with pytest.raises(ExampleMixingError, match="adding one example changed"):
        check_engine(GhostEngine(model, F.cross_entropy), model, *data())


@pytest.mark.parametrize("layer", [CentreOverBatch(), ScaledByBatch()], ids=["batch mean", "batch statistic"])
def test_functorch_refuses_a_model_that_computes_a_batch_differently_from_its_examples(layer):
    """vmap runs each example alone, so its gradients are private, but they are not the gradients of the
    model the run trains and evaluates (which sees whole batches)."""
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), layer, nn.Linear(6, 3))
    with pytest.raises(ExampleMixingError, match="mixes examples"):
        check_engine(FunctorchEngine(model, F.cross_entropy), model, *data())


def test_functorch_refuses_running_statistics_with_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 6), RunningMean(), nn.Linear(6, 3))
    with pytest.raises(ExampleMixingError, match="changed the model's state other than its parameters: buffer '1.running'"):
        check_engine(FunctorchEngine(model, F.cross_entropy), model, *data())


def test_the_check_leaves_random_state_training_flags_and_buffers_as_they_were():
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.GroupNorm(2, 6), nn.Linear(6, 3)).eval()
    model.register_buffer("counter", torch.tensor([3.0]))
    state = torch.get_rng_state()
    check_engine(GhostEngine(model, F.cross_entropy), model, *data())
    assert torch.equal(torch.get_rng_state(), state)
    assert not any(m.training for m in model.modules())
    assert torch.equal(model.counter, torch.tensor([3.0]))


class TiedProjection(nn.Module):
    """The same Parameter in two modules (input and output projections share one weight)."""

    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(4, 4, bias=False)
        self.decode = nn.Linear(4, 4)
        self.decode.weight = self.encode.weight

    def forward(self, x):
        return self.decode(torch.tanh(self.encode(x)))[:, :3]


def test_a_parameter_shared_by_two_modules_is_exact_with_functorch_and_refused_by_ghost():
    torch.manual_seed(0)
    model = TiedProjection()
    check_engine(FunctorchEngine(model, F.cross_entropy), model, *data())
    with pytest.raises(ValueError, match="encode.weight.*use FunctorchEngine"):
        GhostEngine(model, F.cross_entropy)


class UnderstatedNorms:
    """An engine that reports a quarter of every squared norm (half the norm) while summing the true
    gradients: clipping would let each example contribute up to twice the bound."""

    def __init__(self, engine):
        self.engine, self.loss_fn = engine, engine.loss_fn

    def per_sample_gradients(self, features, labels):
        gradients = self.engine.per_sample_gradients(features, labels)
        true_norms = gradients.squared_norms
        gradients.squared_norms = lambda: true_norms() / 4
        return gradients


@pytest.mark.parametrize("engine_class", ENGINES)
def test_reported_norms_are_compared_with_autograd_example_by_example(engine_class):
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    with pytest.raises(ExampleMixingError, match="squared norm for parameter '0.weight' differ from autograd"):
        check_engine(UnderstatedNorms(engine_class(model, F.cross_entropy)), model, *data())
