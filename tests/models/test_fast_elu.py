"""FastELU is nn.ELU: same values, same gradients, also per example under torch.func."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from dpbench.models.fast_elu import FastELU


def test_values_and_gradients_equal_elu():
    x = torch.cat([torch.linspace(-30, 30, 10001), torch.tensor([0.0, -1e-8, 1e-8])]).requires_grad_()
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    fast = FastELU()(x)
    (fast_grad,) = torch.autograd.grad(fast, x, upstream)
    reference = F.elu(x)
    (reference_grad,) = torch.autograd.grad(reference, x, upstream)
    torch.testing.assert_close(fast, reference, rtol=0, atol=3e-7)
    torch.testing.assert_close(fast_grad, reference_grad, rtol=0, atol=3e-7)


def test_per_example_gradients_under_vmap_match_elu():
    torch.manual_seed(0)
    fast = nn.Sequential(nn.Linear(5, 7), FastELU(), nn.Linear(7, 1))
    slow = nn.Sequential(fast[0], nn.ELU(), fast[2])
    params = {name: p.detach() for name, p in fast.named_parameters()}
    x = torch.randn(6, 5)

    def per_example(model: nn.Module):
        loss = lambda p, xb: functional_call(model, p, (xb.unsqueeze(0),)).sum()  # noqa: E731
        return vmap(grad(loss), in_dims=(None, 0))(params, x)

    got, expected = per_example(fast), per_example(slow)
    for name in params:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(3,), (2, 4, 5)])
def test_shape_and_dtype_are_kept(shape):
    x = torch.randn(shape, dtype=torch.float64)
    y = FastELU()(x)
    assert y.shape == x.shape and y.dtype == torch.float64
    torch.testing.assert_close(y, F.elu(x))
