"""A run refuses, before its first step, a model that mixes examples: by type (BatchNorm without
parameters, which no engine rule ever registers) and empirically (an unknown layer)."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpbench.engine.independence import ExampleMixingError
from dpbench.models import DigitsTanhCNN
from dpbench.training.experiment import run_experiment


class DigitsWithBatchNorm(DigitsTanhCNN):
    """The digits CNN with a parameter-free BatchNorm after its first convolution."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        self.features.insert(1, nn.BatchNorm2d(16, affine=False))


class CentreOverBatch(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x - x.mean(dim=0, keepdim=True)


class DigitsCentredOverBatch(DigitsTanhCNN):
    """The digits CNN with an unknown layer that subtracts the batch mean."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        self.features.insert(1, CentreOverBatch())


class DigitsTiedClassifier(DigitsTanhCNN):
    """The digits CNN whose classifier weight is used again outside its module (tied weights)."""

    def forward(self, images: Tensor) -> Tensor:
        logits = self.classifier(self.features(images))
        weight = self.classifier.weight
        return logits + F.linear(torch.tanh(F.linear(logits, weight.t())), weight)


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, engine, message",
    [
        (DigitsWithBatchNorm, "ghost", r"module 'features.1' \(BatchNorm2d\).*GroupNorm"),
        (DigitsWithBatchNorm, "functorch", r"module 'features.1' \(BatchNorm2d\).*GroupNorm"),
        (DigitsCentredOverBatch, "ghost", "replacing one example changed other examples' gradients"),
        (DigitsCentredOverBatch, "functorch", "mixes examples"),
        (DigitsTiedClassifier, "ghost", "parameter 'classifier.weight' differ from autograd.*train.engine=functorch"),
    ],
    ids=["batchnorm ghost", "batchnorm functorch", "batch mean ghost", "batch mean functorch", "tied weights ghost"],
)
def test_a_run_refuses_a_model_that_mixes_examples_before_its_first_step(make_config, tmp_path, model, engine,
                                                                          message):
    cfg = make_config(f"model._target_={model.__module__}.{model.__qualname__}", f"train.engine={engine}")
    with pytest.raises(ExampleMixingError, match=message):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
