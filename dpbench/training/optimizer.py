"""The optimizer that applies released gradients (post-processing: it sees only what the kernel released)."""

from __future__ import annotations

import torch
import torch.optim.optimizer as optimizer_module
from omegaconf import DictConfig

from dpbench.errors import DpbenchError
from dpbench.privacy.isolation import StateFingerprint, listed

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


class OptimizerGuard:
    """The optimizer's state and settings change only in its step, which applies a release.

    The optimizer's ``state`` (momentum buffers, step counts, any other key) and ``param_groups`` (learning rate,
    momentum, any other key) shape every later update and are saved in the checkpoint. A red team's model found
    the run's optimizer during its forward (through ``gc``) and stored a training image under a new key of each:
    that image was then released with the checkpoint. So between two steps both must be as the last step left
    them, compared by content (:class:`~dpbench.privacy.isolation.StateFingerprint`), the parameters by
    identity."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._baseline = self._fingerprint()

    def accept_step(self) -> None:
        """Accept the state the optimizer's step left (post-processing of the release)."""
        self._baseline = self._fingerprint()

    def check(self, what: str) -> None:
        changed = self._baseline.changes(self._fingerprint(copies=False))
        if changed:
            raise DpbenchError(
                f"{what} changed the optimizer's state or settings outside its step: {listed(changed, 6, '; ')}. What the optimizer "
                "holds shapes the next updates and is saved with the model, so only its step, which applies a "
                "release, may change it; the code that ran (a model's forward, say) must leave the optimizer alone"
            )

    def _fingerprint(self, copies: bool = True) -> StateFingerprint:
        groups = self.optimizer.param_groups
        position = {id(p): f"parameter {g}.{i}" for g, group in enumerate(groups) for i, p in enumerate(group["params"])}
        state = {position[id(key)] if id(key) in position else _label(key): value
                 for key, value in self.optimizer.state.items()}
        settings = [{key: value for key, value in group.items() if key != "params"} | {
            "params": tuple(position[id(p)] for p in group["params"])} for group in groups]
        return StateFingerprint({"state": state, "param_groups": settings}, random_states=False, versions=False,
                                copies=copies, reach=False)


def _label(key: object) -> str:
    """A state key that is not one of the optimizer's parameters, as a short label (a tensor's by its shape: its
    repr prints its values)."""
    if isinstance(key, torch.Tensor):
        return f"key tensor {tuple(key.shape)} at {id(key)}"
    return f"key {key!r}"[:80]
