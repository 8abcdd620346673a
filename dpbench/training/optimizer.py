"""The optimizer that applies released gradients (post-processing: it sees only what the kernel released)."""

from __future__ import annotations

import torch
import torch.optim.optimizer as optimizer_module
from omegaconf import DictConfig

from dpbench.errors import DpbenchError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def _defined_steps() -> dict[type, object]:
    """Each optimizer's ``step`` as torch defines it, read when dpbench is imported (before any model's module),
    after one instance was built (the first instance wraps its class's ``step`` for profiling)."""
    for cls in OPTIMIZERS.values():
        cls([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    return {cls: cls.step for cls in OPTIMIZERS.values()}


_STEPS = _defined_steps()


def build_optimizer(train_cfg: DictConfig, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``train.optimizer`` (sgd with ``train.momentum``, or adam) at ``train.lr`` over ``parameters``."""
    if train_cfg.optimizer == "sgd":
        return OPTIMIZERS["sgd"](parameters, lr=train_cfg.lr, momentum=train_cfg.momentum)
    if train_cfg.optimizer == "adam":
        return OPTIMIZERS["adam"](parameters, lr=train_cfg.lr)
    raise ValueError(f"unknown optimizer '{train_cfg.optimizer}'; use train.optimizer=sgd or adam")


def refuse_step_hooks(optimizer: torch.optim.Optimizer) -> None:
    """The optimizer step applies the release and nothing else: no step hook (global or the optimizer's own: a red
    team's model registered one that wrote a training image it had kept into the weights), and ``step`` as torch
    defines it. Checked before every step."""
    hooks = {
        "a global optimizer pre-step hook": optimizer_module._global_optimizer_pre_hooks,
        "a global optimizer post-step hook": optimizer_module._global_optimizer_post_hooks,
        "the optimizer's pre-step hook": optimizer._optimizer_step_pre_hooks,
        "the optimizer's post-step hook": optimizer._optimizer_step_post_hooks,
    }
    found = [what for what, registered in hooks.items() if registered]
    if type(optimizer) in _STEPS and type(optimizer).step is not _STEPS[type(optimizer)]:
        found.append(f"a replaced {type(optimizer).__name__}.step")
    if found:
        raise DpbenchError(
            f"{', '.join(found)} is registered: code run by the training (a model's, a mechanism's) changed how "
            "released gradients are applied, which could write what it kept of the training data into the "
            "weights; remove it (the optimizer's step is the harness's)"
        )
