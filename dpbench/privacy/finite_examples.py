"""An example whose gradient is not finite contributes nothing to the step.

A gradient overflows, or an input holds inf or NaN, for reasons that can lie in one example alone. If
such an example stopped the run, whether a run (or a search's trial) finishes would be a function of one
example, released un-noised. Instead the kernel leaves the example out of its physical batch and computes
the others' gradients again without it: its contribution is zero, which is within every clipping bound
(and within the statistic's range), so the release keeps its sensitivity, and the others' gradients do not
depend on it (examples are independent: :mod:`dpbench.engine.independence`). Nothing says how many were
left out: the count is a function of the data.

Parameters that are themselves non-finite are a function of earlier releases only, so a diverged run is
still stopped (by the training loop, with the learning rate to lower).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from dpbench.engine.per_sample import MaterializedGradients, PerSampleGradients

Gradients = Callable[[torch.Tensor, torch.Tensor], PerSampleGradients]
"""``(features, labels) -> per-example gradients``: an engine's, run as the caller requires (contained)."""


class CheckedChunk:
    """An engine's result for a physical batch whose every example has a finite gradient; the squared
    norms computed to check that are kept for the clipping kernel (the ghost engine does not cache them)."""

    def __init__(self, inner: PerSampleGradients, squared: torch.Tensor) -> None:
        self._inner, self._squared = inner, squared
        self.batch_size, self.losses = inner.batch_size, inner.losses

    def squared_norms(self) -> torch.Tensor:
        return self._squared

    def weighted_sum(self, weights: torch.Tensor) -> list[torch.Tensor]:
        return self._inner.weighted_sum(weights)

    def materialize(self) -> list[torch.Tensor]:
        return self._inner.materialize()


def finite_examples(
    gradients: Gradients, features: torch.Tensor, labels: torch.Tensor, shapes: Sequence[torch.Size]
) -> CheckedChunk | MaterializedGradients:
    """The per-example gradients of the examples of ``features`` whose gradient is finite in every entry
    (a float64 squared norm is finite exactly when every float32 entry is); ``shapes`` are the trainable
    parameters' shapes, for a batch with no such example."""
    chunk = gradients(features, labels)
    squared = chunk.squared_norms()
    finite = torch.isfinite(squared).all(dim=1)
    if bool(finite.all()):
        return CheckedChunk(chunk, squared)
    del chunk
    keep = finite.nonzero().flatten()
    if keep.numel() == 0:
        empty = [torch.zeros((0, *shape), device=features.device) for shape in shapes]
        return MaterializedGradients(empty, torch.zeros(0, device=features.device))
    chunk = gradients(features.index_select(0, keep), labels.index_select(0, keep))
    squared = chunk.squared_norms()
    if not bool(torch.isfinite(squared).all()):
        raise FloatingPointError(
            "an example's gradient became non-finite when other examples were left out of its batch: the model "
            "mixes examples, which the independence check before training should have refused; please report it"
        )
    return CheckedChunk(chunk, squared)
