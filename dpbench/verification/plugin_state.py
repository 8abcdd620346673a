"""What a plugin keeps between steps, and whether keeping it costs privacy.

A probe snapshots every numeric leaf of a plugin copy's state after the call (tensors, arrays and
numbers reachable through attributes, dicts, lists and tuples; generators excluded) and sorts each
leaf that one added example changes (same random stream, so the change is exact):

- identical under every random stream, yet changed by the example: a deterministic function of raw
  data, a **leak** (a clip norm set from raw norms, an EMA or momentum of un-noised gradients);
- random and changed: either post-processing of the release (a momentum of noised gradients) or a
  **separate noised release** (a noised quantile count). Two added examples whose clipped
  contributions are equal, ``x_a`` (huge) and ``x_b`` (``x_a``'s clipped contribution, just inside
  the threshold), move the release alike but differ in raw statistics. A leaf that is a function of
  the release moves alike too (up to the small difference of the two releases, times the leaf's gain
  from the release); a leaf that moves clearly differently reads data through another channel. That
  channel's multiplier is its noise std across random streams over its largest add-one shift, and
  it composes with the gradient's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from dpbench.privacy.plugin_streams import GENERATOR_TYPES, walk
from dpbench.verification.measurement import SHIFT_TOLERANCE, std_upper

# A leaf is a separate channel if the two matched examples move it this many times more than the
# difference of their releases can explain.
CHANNEL_MARGIN = 10.0

Snapshot = dict[str, torch.Tensor]


def snapshot(plugin: Any) -> Snapshot:
    leaves = {}
    for path, value in walk(plugin):
        if isinstance(value, GENERATOR_TYPES):
            continue
        tensor = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype in (torch.bool, torch.int64, torch.int32):
            leaves[path] = tensor.reshape(-1).to("cpu", torch.float64)
    return leaves


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and bool(torch.equal(a, b))


def changed_leaves(base: Snapshot, shifted: Snapshot) -> list[str]:
    return sorted(p for p in base.keys() | shifted.keys() if not _same(base.get(p), shifted.get(p)))


def deterministic(path: str, draws: list[Snapshot]) -> bool:
    return all(_same(draws[0].get(path), d.get(path)) for d in draws[1:])


@dataclass(frozen=True)
class Channel:
    """A state leaf that releases data through its own noise: multiplier = noise std / add-one shift."""

    path: str
    multiplier: float
    upper: float
    shift: float

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None or a.shape != b.shape:
        return math.inf
    return float((a - b).norm())


def separate_channel(
    path: str,
    draws: list[Snapshot],
    base: Snapshot,
    with_a: Snapshot,
    with_b: Snapshot,
    release_shift_a: float,
    release_difference_ab: float,
    alpha: float,
) -> Channel | None:
    """The leaf's own channel, or None if the matched pair says it only follows the release."""
    shift_a, shift_b = _norm(with_a.get(path), base.get(path)), _norm(with_b.get(path), base.get(path))
    observed = _norm(with_a.get(path), with_b.get(path))
    largest = max(shift_a, shift_b)
    if largest == 0.0:
        return None
    gain = shift_a / release_shift_a if release_shift_a > 0 else math.inf
    if math.isfinite(observed) and observed <= CHANNEL_MARGIN * gain * release_difference_ab + SHIFT_TOLERANCE * largest:
        return None
    spread = leaf_spread(path, draws)
    if not math.isfinite(largest) or spread is None:
        return Channel(path, 0.0, 0.0, largest)
    squares, dof = spread
    std = math.sqrt(squares / dof)
    return Channel(path, std / largest, std_upper(std, dof, alpha) / largest, largest)


def leaf_spread(path: str, draws: list[Snapshot], scale: float = 1.0) -> tuple[float, int] | None:
    """Sum of squared deviations of the leaf / ``scale`` from its mean across draws, and its degrees of
    freedom; None if a draw lacks the leaf or changes its shape."""
    values = [d.get(path) for d in draws]
    if any(v is None or v.shape != values[0].shape for v in values):
        return None
    stacked = torch.stack(values) / scale
    return float((stacked - stacked.mean(dim=0)).pow(2).sum()), (stacked.shape[0] - 1) * stacked.shape[1]
