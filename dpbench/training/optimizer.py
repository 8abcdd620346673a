"""The optimizer that applies released gradients (post-processing: it sees only what the kernel released)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig


def build_optimizer(train_cfg: DictConfig, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``train.optimizer`` (sgd with ``train.momentum``, or adam) at ``train.lr`` over ``parameters``."""
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=train_cfg.lr, momentum=train_cfg.momentum)
    if train_cfg.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=train_cfg.lr)
    raise ValueError(f"unknown optimizer '{train_cfg.optimizer}'; use train.optimizer=sgd or adam")
