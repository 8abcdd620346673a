"""Splits of a private dataset in which each example's side depends on that example alone.

A split drawn as a permutation of ``range(n)`` under a fixed seed is a function of the dataset's *size*: one
added example moves almost every other example to the other side (a seventh red team's neighbouring digits sets
shared 13 of their 144 validation examples, and the released correct-prediction count of sensitivity 1 moved by
131). Here an example is held out when a keyed hash of its own key (its bytes: features and label, or a
device's id) falls below ``fraction``: adding or removing one example changes its own side and no other's, so
each side of the split of a neighbouring dataset is a neighbouring dataset of the same side (or the same one),
and the mechanisms that read one side each keep their guarantee. The hash's key (the split's seed) may be public:
which side an example lands on is then public too, which DP allows (it depends on that example alone). Equal
examples land on the same side. The held-out share is ``fraction`` in expectation (binomial around it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import torch

_SCALE = float(2**64)


def example_keys(features: torch.Tensor, labels: torch.Tensor) -> Iterable[bytes]:
    """Each example's bytes: its feature row and its label (two examples with the same features and different
    labels are different examples)."""
    rows = features.detach().to("cpu").contiguous().reshape(features.shape[0], -1).numpy()
    label_bytes = labels.detach().to("cpu", torch.int64).numpy()
    for row, label in zip(rows, label_bytes):
        yield row.tobytes() + label.tobytes()


def held_out(keys: Iterable[bytes | str], fraction: float, seed: int) -> torch.Tensor:
    """``[n]`` bool: which examples (given by their keys, in order) are held out, each by its own keyed hash."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"a held-out fraction must be in (0, 1), got {fraction}")
    key = int(seed).to_bytes(16, "little", signed=True)
    threshold = fraction * _SCALE
    picks = []
    for example in keys:
        data = example.encode() if isinstance(example, str) else example
        digest = hashlib.blake2b(data, digest_size=8, key=key).digest()
        picks.append(int.from_bytes(digest, "little") < threshold)
    return torch.from_numpy(np.asarray(picks, dtype=bool))
