"""The ScatterNet classifiers: sizes, per-example normalisation, and exact ghost-engine gradients."""

import torch
import torch.nn.functional as F

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.models import ScatterCNN, ScatterLinear


def test_scatter_linear_is_one_linear_layer_on_the_coefficients():
    model = ScatterLinear(channels=81, height=7, width=7)
    assert sum(p.numel() for p in model.parameters()) == 81 * 7 * 7 * 10 + 10
    assert model(torch.randn(5, 81, 7, 7)).shape == (5, 10)


def test_scatter_cnn_output_shape_for_mnist_and_cifar_coefficients():
    assert ScatterCNN(channels=81, widths=(16, 32), hidden=32)(torch.randn(2, 81, 7, 7)).shape == (2, 10)
    assert ScatterCNN(channels=243, widths=(64, "M", 64))(torch.randn(2, 243, 8, 8)).shape == (2, 10)


def test_normalisation_uses_each_example_alone():
    """Privacy rests on this: an example's logits must not change when another example changes."""
    torch.manual_seed(0)
    for model in (ScatterLinear(channels=81, height=7, width=7), ScatterCNN(channels=81)):
        batch = torch.randn(4, 81, 7, 7)
        changed = batch.clone()
        changed[3] = 100.0 * torch.randn(81, 7, 7)
        torch.testing.assert_close(model(batch)[:3], model(changed)[:3])


def test_ghost_engine_matches_per_sample_reference():
    torch.manual_seed(0)
    for model, shape in ((ScatterLinear(channels=81, height=7, width=7), (81, 7, 7)), (ScatterCNN(channels=243), (243, 8, 8))):
        x, y = torch.randn(6, *shape), torch.randint(0, 10, (6,))
        reference = FunctorchEngine(model, F.cross_entropy).per_sample_gradients(x, y)
        ghost = GhostEngine(model, F.cross_entropy).per_sample_gradients(x, y)
        torch.testing.assert_close(ghost.squared_norms(), reference.squared_norms(), rtol=1e-4, atol=1e-8)
        weights = torch.rand(reference.squared_norms().shape)  # one weight per example and parameter tensor
        for got, expected in zip(ghost.weighted_sum(weights), reference.weighted_sum(weights)):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
