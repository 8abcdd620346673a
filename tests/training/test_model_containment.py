"""A model's code runs on the raw batch, so the loop runs it contained as a mechanism's is: a tenth red team's model
found the run's optimizer through ``gc`` in its forward; frames (which hold the kernel's state) are refused too."""

from __future__ import annotations

import gc
import sys

import pytest
import torch
import torch.nn.functional as F
from plain_sum import PlainSum
from torch import nn

from dpbench.engine import GhostEngine
from dpbench.privacy.calibration import TrainingPlan
from dpbench.privacy.containment import ContainmentError
from dpbench.privacy.sampler import PoissonSampler
from dpbench.training.loop import TrainingState, train


class Reaching(nn.Module):
    """Reaches past its arguments in its training forward (``route``), or in its evaluation's."""

    def __init__(self, route: str, when: str) -> None:
        super().__init__()
        self.route, self.when = route, when
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training == (self.when == "training"):
            if self.route == "gc":
                [o for o in gc.get_objects() if isinstance(o, torch.optim.Optimizer)]
            else:
                sys._getframe(1)
        return self.linear(x)


class Data:
    train_features, train_labels = torch.randn(16, 4), torch.randint(0, 3, (16,))

    def evaluate(self, model: nn.Module, device: torch.device) -> dict:
        model.eval()
        with torch.no_grad():
            model(torch.ones(2, 4))
        return {"test_accuracy": 0.0}


@pytest.mark.parametrize("when", ["training", "evaluation"])
@pytest.mark.parametrize("route, refused", [("gc", r"gc.get_objects"), ("frame", r"sys._getframe")])
def test_a_model_reaching_past_its_arguments_is_refused(route, refused, when):
    model = Reaching(route, when)
    plan = TrainingPlan(dataset_size=16, expected_batch_size=8.0, epochs=1)
    with pytest.raises(ContainmentError, match=rf"model 'Reaching' .*{refused}"):
        train(model, Data(), GhostEngine(model, F.cross_entropy), PlainSum(), torch.optim.SGD(model.parameters(), lr=0.1),
              PoissonSampler(16, plan.sampling_rate, seed=0), plan, lambda _: 0.0, 8, torch.device("cpu"),
              TrainingState(), lambda state: None, progress=False)
