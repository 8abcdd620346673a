"""The tanh CNNs' GroupNorm option: per-example normalisation with exact ghost-engine gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.models import Cifar10TanhCNN, MnistTanhCNN


@pytest.mark.parametrize("model_class, shape", [(MnistTanhCNN, (1, 28, 28)), (Cifar10TanhCNN, (3, 32, 32))])
def test_group_norm_option(model_class, shape):
    torch.manual_seed(0)
    plain, normed = model_class(), model_class(group_norm_groups=8)
    norms = [m for m in normed.modules() if isinstance(m, nn.GroupNorm)]
    convs = [m for m in normed.modules() if isinstance(m, nn.Conv2d)]
    assert len(norms) == len(convs) and all(n.num_groups == 8 for n in norms)
    assert not any(isinstance(m, nn.GroupNorm) for m in plain.modules())

    x, y = torch.randn(4, *shape), torch.randint(0, 10, (4,))
    changed = x.clone()
    changed[3] = 10.0 * torch.randn(*shape)
    torch.testing.assert_close(normed(x)[:3], normed(changed)[:3])  # no example depends on another

    reference = FunctorchEngine(normed, F.cross_entropy).per_sample_gradients(x, y)
    ghost = GhostEngine(normed, F.cross_entropy).per_sample_gradients(x, y)
    torch.testing.assert_close(ghost.squared_norms(), reference.squared_norms(), rtol=1e-4, atol=1e-8)
