"""The optimizer's state and settings change only in its step (a tenth red team's model found the optimizer through
``gc`` in its forward and stored a training image under new keys of its state and param group, which the checkpoint
saves); its step runs without hooks."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from dpbench.errors import DpbenchError
from dpbench.training.optimizer import OptimizerGuard, refuse_step_hooks


def optimizer_with_momentum() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()


def test_steps_and_a_learning_rate_schedule_pass():
    model, optimizer = optimizer_with_momentum()
    guard = OptimizerGuard(optimizer)
    for lr in (0.1, 0.05):
        guard.check("a training step")
        optimizer.param_groups[0]["lr"] = lr  # the schedule, after the check
        refuse_step_hooks(optimizer)
        step(model, optimizer)
        guard.accept_step()
    assert optimizer.state[model.weight]["momentum_buffer"] is not None


def found_through_gc(model: nn.Module) -> torch.optim.Optimizer:
    mine = {id(p) for p in model.parameters()}
    return next(o for o in gc.get_objects() if isinstance(o, torch.optim.Optimizer)
                and any(id(p) in mine for g in o.param_groups for p in g["params"]))


@pytest.mark.parametrize("where", ["a new state key", "a new param-group key", "a momentum buffer"])
def test_a_write_into_the_optimizer_between_steps_is_refused(where):
    model, optimizer = optimizer_with_momentum()
    step(model, optimizer)
    guard = OptimizerGuard(optimizer)
    image = torch.arange(6.0)
    found = found_through_gc(model)  # what a model's forward can do
    if where == "a new state key":
        found.state["kept"] = image
    elif where == "a new param-group key":
        found.param_groups[0]["kept"] = image
    else:
        found.state[model.weight]["momentum_buffer"][0, 0] = 42.0
    with pytest.raises(DpbenchError, match=r"training step 3 changed the optimizer's state or settings"):
        guard.check("training step 3")


def test_a_step_hook_or_a_replaced_step_is_refused():
    model, optimizer = optimizer_with_momentum()
    handle = optimizer.register_step_post_hook(lambda *args: None)
    with pytest.raises(DpbenchError, match="the optimizer's post-step hook is registered"):
        refuse_step_hooks(optimizer)
    handle.remove()
    original = torch.optim.SGD.step
    torch.optim.SGD.step = lambda self, closure=None: None
    try:
        with pytest.raises(DpbenchError, match="a replaced SGD.step"):
            refuse_step_hooks(optimizer)
    finally:
        torch.optim.SGD.step = original
    refuse_step_hooks(optimizer)
