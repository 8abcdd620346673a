"""The telemetry VAEs pass the engine's example-independence check (moved here from tests/engine: they need the
telemetry extra)."""

import pytest
import torch

from dpbench.engine import GhostEngine
from dpbench.engine.independence import check_engine
from dpbench.telemetry.vae import HurdleVAE, TabularVAE


@pytest.mark.parametrize("model_class", [TabularVAE, HurdleVAE])
def test_the_telemetry_vaes_pass_with_their_latent_noise(model_class):
    """Their forward draws latent noise: the check draws the same noise for both batches."""
    torch.manual_seed(0)
    model = model_class(hidden=(32, 16), latent=4)
    rows = torch.rand(5, model.encoder[0].in_features)
    check_engine(GhostEngine(model, model.loss), model, rows, torch.zeros(5, dtype=torch.long))
