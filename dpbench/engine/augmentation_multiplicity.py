"""Augmentation multiplicity (De et al. 2022): each example's gradient is the mean over K augmented views.

Privacy: the row that the kernel clips for example i is the mean of the gradients of K views of
example i, each view a function of example i and data-independent randomness only. Example i still
contributes exactly one row, clipped to the mechanism's bound like any other, so the sensitivity and
the accounting are unchanged; only the gradient's variance drops, at K times the compute.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dpbench.engine.per_sample import GradientEngine, MaterializedGradients

Augment = Callable[[torch.Tensor], torch.Tensor]


class AugmentationMultiplicity:
    """Wraps an engine: ``views`` augmented copies of each example go through ``engine`` as rows, and
    their per-example gradients are averaged back into one row per example (materialised, so memory
    grows with ``physical batch x views x parameters``: lower ``train.physical_batch_size`` to bound it)."""

    def __init__(self, engine: GradientEngine, augment: Augment, views: int) -> None:
        if views < 1:
            raise ValueError(f"augmentation multiplicity needs at least 1 view per example, got {views}")
        self.engine, self.augment, self.views = engine, augment, views

    def per_sample_gradients(self, features: torch.Tensor, labels: torch.Tensor) -> MaterializedGradients:
        batch = features.shape[0]
        rows = self.engine.per_sample_gradients(
            self.augment(features.repeat_interleave(self.views, dim=0)), labels.repeat_interleave(self.views, dim=0)
        )
        means = [g.reshape(batch, self.views, *g.shape[1:]).mean(dim=1) for g in rows.materialize()]
        return MaterializedGradients(means, rows.losses.reshape(batch, self.views).mean(dim=1))
