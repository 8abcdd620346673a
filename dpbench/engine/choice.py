"""The engine a run's config names, checked before training on public examples to keep examples independent."""

from __future__ import annotations

from functools import partial

import torch
from omegaconf import DictConfig

from dpbench.data.augmentation import random_crop_flip
from dpbench.engine.augmentation_multiplicity import AugmentationMultiplicity
from dpbench.engine.functorch_engine import FunctorchEngine
from dpbench.engine.ghost_engine import GhostEngine
from dpbench.engine.independence import check_engine
from dpbench.engine.per_sample import GradientEngine, LossFunction

ENGINES = {"ghost": GhostEngine, "functorch": FunctorchEngine}


def build_engine(
    name: str, model: torch.nn.Module, loss: LossFunction, augmentation: DictConfig | None,
    public_features: torch.Tensor, public_labels: torch.Tensor,
) -> GradientEngine:
    """Engine ``name`` (``train.engine``) of ``loss(model(x), y)``, checked on the public examples (the test split:
    buffers do not move, per-example rows are autograd's, examples do not influence each other), wrapped in
    augmentation multiplicity when ``augmentation.views`` asks for it."""
    if name not in ENGINES:
        raise ValueError(f"unknown train.engine '{name}'; use one of {sorted(ENGINES)}")
    engine = ENGINES[name](model, loss)
    check_engine(engine, model, public_features, public_labels)
    if augmentation is None or augmentation.views == 0:
        return engine
    augment = partial(random_crop_flip, padding=augmentation.crop_padding, flip=augmentation.flip)
    return AugmentationMultiplicity(engine, augment, augmentation.views)
