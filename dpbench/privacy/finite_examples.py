"""An example whose gradient is not finite contributes nothing to the step.

A gradient overflows, or an input holds inf or NaN, for reasons that can lie in one example alone. If
such an example stopped the run, whether a run (or a search's trial) finishes would be a function of one
example, released un-noised. Instead the kernel computes the batch again with that example's row replaced
by zeros (features and label: a placeholder that depends on no example, given weight zero): its
contribution is zero, which is within every clipping bound (and within the statistic's range), so the
release keeps its sensitivity. The second pass runs from the random state the first one started from and
keeps the batch's shape, so every other example gets the same dropout mask, augmentation and gradient as in
the first pass (examples are independent: :mod:`dpbench.engine.independence`): a second pass over a smaller
batch drew other masks, under which another example could overflow in turn (a red team's honest dropout model
then stopped the run). Nothing says how many were left out: the count is a function of the data.

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
    """An engine's result for a physical batch, with the rows of ``kept`` only (default: all): the others are
    placeholders, whose norms read as 0, whose weights are 0 and which :meth:`materialize` leaves out. The
    squared norms computed to check finiteness are kept for the clipping kernel (the ghost engine does not
    cache them)."""

    def __init__(self, inner: PerSampleGradients, squared: torch.Tensor, kept: torch.Tensor | None = None) -> None:
        self._inner, self._kept = inner, kept
        self._squared = squared if kept is None else squared[kept]
        self.batch_size = inner.batch_size if kept is None else int(kept.numel())
        self.losses = inner.losses if kept is None else inner.losses[kept]

    def squared_norms(self) -> torch.Tensor:
        return self._squared

    def weighted_sum(self, weights: torch.Tensor) -> list[torch.Tensor]:
        if self._kept is None:
            return self._inner.weighted_sum(weights)
        full = weights.new_zeros((self._inner.batch_size, weights.shape[1]))
        full[self._kept] = weights
        return self._inner.weighted_sum(full)

    def materialize(self) -> list[torch.Tensor]:
        rows = self._inner.materialize()
        return rows if self._kept is None else [g.index_select(0, self._kept) for g in rows]


def finite_examples(
    gradients: Gradients, features: torch.Tensor, labels: torch.Tensor, shapes: Sequence[torch.Size]
) -> CheckedChunk | MaterializedGradients:
    """The per-example gradients of the examples of ``features`` whose gradient is finite in every entry
    (a float64 squared norm is finite exactly when every float32 entry is); ``shapes`` are the trainable
    parameters' shapes, for a batch with no such example."""
    start = _random_state(features.device)
    chunk = gradients(features, labels)
    squared = chunk.squared_norms()
    finite = torch.isfinite(squared).all(dim=1)
    if bool(finite.all()):
        return CheckedChunk(chunk, squared)
    del chunk
    kept = finite.nonzero().flatten()
    if kept.numel() == 0:
        empty = [torch.zeros((0, *shape), device=features.device) for shape in shapes]
        return MaterializedGradients(empty, torch.zeros(0, device=features.device))
    placeholders = ~finite
    features = torch.where(_rows(placeholders, features), torch.zeros_like(features), features)
    labels = torch.where(_rows(placeholders, labels), torch.zeros_like(labels), labels)
    after = _random_state(features.device)
    _set_random_state(start)  # the same masks and augmentations for every row as in the first pass
    try:
        chunk = gradients(features, labels)
    finally:
        _set_random_state(after)  # the stream goes on as after one pass
    squared = chunk.squared_norms()
    if not bool(torch.isfinite(squared[kept]).all()):
        raise FloatingPointError(
            "an example's gradient changed when another example's row was replaced in its batch, under the same "
            "random state: the model mixes examples, which the independence check before training should have "
            "refused; please report it"
        )
    if not bool(torch.isfinite(squared).all()):  # a function of the model and the random state, not of the data
        raise FloatingPointError(
            "the model's gradient at an all-zero input is not finite, so an example whose gradient is not finite "
            "cannot be left out of its batch; make the model finite at zero (e.g. add an epsilon inside a log or "
            "a division)"
        )
    return CheckedChunk(chunk, squared, kept)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``mask`` ``[B]`` shaped to broadcast over ``like`` ``[B, ...]``."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _random_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, torch.device]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda, device


def _set_random_state(state: tuple[torch.Tensor, torch.Tensor | None, torch.device]) -> None:
    cpu, cuda, device = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
