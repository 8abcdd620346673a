"""GhostEngine against the FunctorchEngine reference (vmap over grad, an independent computation):
per-sample squared norms, weighted sums and materialised gradients agree to 1e-5 relative, for every
layer rule under both of its forms (ghost norm and explicit), the repo's models and the benchmark's
MLP-VAE; unsupported layers fall back with a warning; unsupported model patterns are refused."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from script_loader import load_script
from torch import nn

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.engine.layer_rules import LayerCall, Policy, conv2d_rule
from dpbench.models import Cifar10TanhCNN, DigitsTanhCNN, MnistTanhCNN
from dpbench.privacy.privatizer import StructuredPrivatizer
from mechanisms.fixed import FixedClipping

RTOL = 1e-5
POLICIES = {
    "default": Policy(),
    "ghost": Policy(max_explicit_bytes=0),  # ghost norms and book-keeping wherever a rule has them
    # materialised weight gradients wherever a rule has them
    "explicit": Policy(memory_factor=0.0, max_explicit_ratio=math.inf),
}


def assert_matches_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=F.cross_entropy, policy=None):
    torch.manual_seed(1)
    reference = FunctorchEngine(model, loss_fn).per_sample_gradients(x, y)
    ghost = GhostEngine(model, loss_fn, policy).per_sample_gradients(x, y)
    expected_norms = reference.squared_norms()
    torch.testing.assert_close(
        ghost.squared_norms(), expected_norms, rtol=RTOL, atol=RTOL * float(expected_norms.max())
    )
    torch.testing.assert_close(ghost.losses, reference.losses, rtol=RTOL, atol=1e-7)
    weights = torch.rand(expected_norms.shape)
    for got, expected in zip(ghost.weighted_sum(weights), reference.weighted_sum(weights)):
        torch.testing.assert_close(got, expected, rtol=RTOL, atol=RTOL * float(expected.abs().max()))
    for got, expected in zip(ghost.materialize(), reference.materialize()):
        torch.testing.assert_close(got, expected, rtol=RTOL, atol=RTOL * float(expected.abs().max()))
    assert ghost.batch_size == x.shape[0]


def _classify(features: nn.Module, in_shape: tuple[int, ...], classes: int = 3) -> nn.Module:
    model = nn.Sequential(features, nn.Tanh(), nn.Flatten())
    width = model(torch.zeros(1, *in_shape)).shape[1]
    return nn.Sequential(*model, nn.Linear(width, classes))


CONVOLUTIONS = {
    "plain": {},
    "no_bias": {"bias": False},
    "strided": {"stride": 2},
    "asymmetric_stride": {"stride": (2, 1), "padding": (0, 1)},
    "padded": {"padding": 2},
    "dilated": {"dilation": 2, "padding": 1},
    "grouped": {"groups": 2, "padding": 1},
    "depthwise": {"groups": 4, "stride": 2},
    "same": {"padding": "same", "dilation": 2},
    "reflect": {"padding": 1, "padding_mode": "reflect"},
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("conv", CONVOLUTIONS)
def test_conv2d(conv, policy):
    torch.manual_seed(0)
    model = _classify(nn.Conv2d(4, 8, 3, **CONVOLUTIONS[conv]), (4, 9, 9))
    assert_matches_reference(model, torch.randn(6, 4, 9, 9), torch.randint(0, 3, (6,)), policy=POLICIES[policy])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("conv", [name for name in CONVOLUTIONS if "groups" not in CONVOLUTIONS[name]])
def test_conv2d_one_input_channel(conv, policy):
    """One input channel per group: the explicit form's correlation path (see also ``depthwise``)."""
    torch.manual_seed(0)
    model = _classify(nn.Conv2d(1, 8, 3, **CONVOLUTIONS[conv]), (1, 10, 9))
    assert_matches_reference(model, torch.randn(6, 1, 10, 9), torch.randint(0, 3, (6,)), policy=POLICIES[policy])


@pytest.mark.parametrize("form", ["explicit", "ghost"])
@pytest.mark.parametrize("in_channels", [1, 4])
@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_conv2d_chunks(form, in_channels, chunk):
    """Convolution gradients (explicit) or ghost norms (from unfolded patches, 25 positions) computed
    a few examples at a time, uneven last chunk included."""
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, 8, 3, stride=2, padding=1)
    if form == "explicit":
        policy = Policy(memory_factor=0.0, max_explicit_ratio=math.inf, max_chunk_bytes=chunk * conv.weight.numel() * 4)
    else:
        policy = Policy(max_explicit_bytes=0, max_chunk_bytes=chunk * 25 * conv.weight[0].numel() * 4)
    model = _classify(conv, (in_channels, 9, 9))
    assert_matches_reference(model, torch.randn(7, in_channels, 9, 9), torch.randint(0, 3, (7,)), policy=policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tokens", [None, 5])
def test_linear(bias, tokens, policy):
    """2-D inputs, and 3-D inputs ``[B, T, d]`` (a linear layer applied at every position)."""
    torch.manual_seed(0)
    shape = (7,) if tokens is None else (tokens, 7)
    model = _classify(nn.Linear(7, 6, bias=bias), shape)
    assert_matches_reference(model, torch.randn(5, *shape), torch.randint(0, 3, (5,)), policy=POLICIES[policy])


def test_layer_called_twice():
    """A layer applied twice in one forward pass: the per-example gradient is the sum of both uses."""

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared, self.head = nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.shared(torch.tanh(self.shared(x))))

    torch.manual_seed(0)
    for policy in POLICIES.values():
        assert_matches_reference(Twice(), torch.randn(5, 6), torch.randint(0, 3, (5,)), policy=policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_conv_called_twice(policy):
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared, self.head = nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3 * 6 * 6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.shared(torch.tanh(self.shared(x))).flatten(start_dim=1))

    torch.manual_seed(0)
    assert_matches_reference(Twice(), torch.randn(5, 3, 6, 6), torch.randint(0, 3, (5,)), policy=POLICIES[policy])


@pytest.mark.parametrize("ratio, form", [(2.0, "ConvGhostGradients"), (3.0, "ExplicitGradients")])
def test_policy_bounds_explicit_memory(ratio, form):
    """Conv2d(16, 16, 3) on 6x6: explicit gradients (2304 numbers per example) are cheaper to compute
    than ghost norms but 2.77 times the layer's records (576 inputs + 256 output gradients)."""
    conv = nn.Conv2d(16, 16, 3)
    calls = [LayerCall((torch.randn(4, 16, 6, 6),), {}, torch.randn(4, 16, 4, 4))]
    grads = conv2d_rule(conv, calls, ["weight"], Policy(max_explicit_ratio=ratio))
    assert type(grads["weight"]).__name__ == form


def test_normalisation_and_embedding_layers():
    torch.manual_seed(0)
    tokens = nn.Sequential(
        nn.Embedding(11, 6, padding_idx=0), nn.LayerNorm(6), nn.Linear(6, 5), nn.Tanh(), nn.Flatten(), nn.Linear(20, 3)
    )
    indices = torch.randint(0, 11, (6, 4))
    indices[0, :2] = 0
    indices[1] = 3  # repeated rows within one example
    assert_matches_reference(tokens, indices, torch.randint(0, 3, (6,)))
    images = _classify(nn.Sequential(nn.Conv2d(4, 6, 3), nn.GroupNorm(2, 6)), (4, 7, 7))
    assert_matches_reference(images, torch.randn(6, 4, 7, 7), torch.randint(0, 3, (6,)))


@pytest.mark.parametrize("policy", ["default", "ghost"])
@pytest.mark.parametrize(
    "model_class, shape", [(MnistTanhCNN, (1, 28, 28)), (Cifar10TanhCNN, (3, 32, 32)), (DigitsTanhCNN, (1, 8, 8))]
)
def test_repo_models(model_class, shape, policy):
    torch.manual_seed(0)
    assert_matches_reference(
        model_class(), torch.randn(8, *shape), torch.randint(0, 10, (8,)), nn.CrossEntropyLoss(), POLICIES[policy]
    )


def test_mlp_vae():
    bench = load_script("bench_speed")
    torch.manual_seed(0)
    model = bench.MlpVae()
    assert sum(p.numel() for p in model.parameters()) == 620_460
    x, y = bench._vae_data(6, torch.Generator().manual_seed(0))
    assert_matches_reference(model, x, y, bench.VaeLoss())


@pytest.mark.parametrize("method", load_script("bench_speed").METHODS)
def test_every_benchmarked_method_runs_a_step(method):
    """The speed benchmark's methods still build and step against the current kernel (its plugin rows once
    called the privatizer without the key it now needs, and the benchmark printed the error in place of a row)."""
    bench = load_script("bench_speed")
    step, notes = bench.build_step(bench.WORKLOADS["mnist_cnn"], method, 8, 1e9)
    step()
    assert notes["batch"] == 8


def test_unsupported_layer_falls_back_with_warning():
    torch.manual_seed(0)
    model = _classify(nn.Conv1d(4, 6, 3), (4, 9))
    with pytest.warns(UserWarning, match=r"'0' \(Conv1d\).*torch\.func"):
        GhostEngine(model, F.cross_entropy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_matches_reference(model, torch.randn(5, 4, 9), torch.randint(0, 3, (5,)))


def test_clipped_release_matches_reference():
    """The kernel's whole release (clip, sum, noise with the same seed) is the same with either engine."""
    torch.manual_seed(0)
    model = DigitsTanhCNN()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    shapes = [p.shape for p in model.parameters()]
    releases = []
    for engine in (FunctorchEngine(model, F.cross_entropy), GhostEngine(model, F.cross_entropy)):
        privatizer = StructuredPrivatizer(FixedClipping(0.1), shapes, 1.0, 16.0, 0.01, torch.Generator().manual_seed(3))
        chunks = (engine.per_sample_gradients(x[i : i + 5], y[i : i + 5]) for i in range(0, 16, 5))
        releases.append(privatizer.release(chunks, 0, 0))
    for got, expected in zip(releases[1].gradient, releases[0].gradient):
        torch.testing.assert_close(got, expected, rtol=RTOL, atol=RTOL * float(expected.abs().max()))
    assert releases[1].loss_sum == pytest.approx(releases[0].loss_sum, rel=RTOL)


def test_materialize_is_kept():
    model = DigitsTanhCNN()
    gradients = GhostEngine(model, F.cross_entropy).per_sample_gradients(
        torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])
    )
    assert gradients.materialize() is gradients.materialize()


def test_output_modified_in_place():
    """A layer's output changed in place afterwards: its rule still gets the gradient of the layer's
    own output (before the change), not of the changed tensor."""
    torch.manual_seed(0)

    class ShiftInPlace(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mul_(2.0).add_(1.0)

    model = nn.Sequential(
        nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 4), ShiftInPlace(), nn.Tanh(), nn.Linear(4, 2)
    )
    for policy in POLICIES.values():
        assert_matches_reference(model, torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1]), policy=policy)


def test_refuses_shared_parameters():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    model[1].weight = model[0].weight
    with pytest.raises(ValueError, match="shared"):
        GhostEngine(model, F.cross_entropy)


def test_refuses_parameter_used_outside_its_module():
    class Bypass(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.inner.weight, self.inner.bias)

    with pytest.raises(RuntimeError, match="used outside its module"):
        GhostEngine(Bypass(), F.cross_entropy).per_sample_gradients(torch.randn(3, 4), torch.tensor([0, 1, 0]))


def test_unused_layer_has_zero_gradients():
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    assert_matches_reference(Unused(), torch.randn(3, 4), torch.tensor([0, 1, 0]))
