"""The tanh CNNs: exact sizes, output shapes, and layers that per-sample gradients support."""

from typing import NamedTuple

import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn
from torch.func import functional_call, grad, vmap

from dpbench.models import Cifar10TanhCNN, DigitsTanhCNN, MnistTanhCNN


class Architecture(NamedTuple):
    model_class: type[nn.Module]
    input_shape: tuple[int, ...]
    parameters: int


@pytest.fixture(
    params=[
        Architecture(MnistTanhCNN, (1, 28, 28), 26_010),
        Architecture(Cifar10TanhCNN, (3, 32, 32), 550_570),
        Architecture(DigitsTanhCNN, (1, 8, 8), 6_090),
    ],
    ids=lambda architecture: architecture.model_class.__name__,
)
def architecture(request: pytest.FixtureRequest) -> Architecture:
    return request.param


def test_parameter_count_is_exact(architecture: Architecture) -> None:
    assert sum(p.numel() for p in architecture.model_class().parameters()) == architecture.parameters


def test_forward_gives_one_logit_per_class(architecture: Architecture) -> None:
    model_class, input_shape = architecture.model_class, architecture.input_shape
    assert model_class()(torch.randn(3, *input_shape)).shape == (3, 10)
    assert model_class(num_classes=4)(torch.randn(2, *input_shape)).shape == (2, 4)


def test_layers_are_valid_for_opacus(architecture: Architecture) -> None:
    model = architecture.model_class()
    assert ModuleValidator.validate(model, strict=False) == []
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_vmapped_per_sample_gradients_match_one_at_a_time(architecture: Architecture) -> None:
    torch.manual_seed(0)
    model = architecture.model_class()
    images, labels = torch.randn(3, *architecture.input_shape), torch.tensor([0, 4, 9])
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, p, (image[None],)), label[None])

    batched = vmap(grad(loss), in_dims=(None, 0, 0))(params, images, labels)
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(images[i : i + 1]), labels[i : i + 1]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(batched[name][i], p.grad, rtol=1e-4, atol=1e-6)
