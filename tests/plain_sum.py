"""A stand-in privatizer for tests of the training loop: it releases the plain sum of the chunks' per-example
gradients (times ``scale``), so a test sees what the loop hands the kernel, not what the kernel does with it."""

from __future__ import annotations

import torch

from dpbench.privacy.ledger import StepRecord
from dpbench.privacy.privatizer import Release


class PlainSum:
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.sizes: list[int] = []  # each step's batch size, as the loop handed it over

    def release(self, chunks, step: int, epoch: int) -> Release:
        total, size = None, 0
        for chunk in chunks:
            ones = torch.ones(chunk.batch_size, chunk.squared_norms().shape[1], dtype=torch.float64)
            part = [self.scale * g for g in chunk.weighted_sum(ones)]
            total = part if total is None else [a + b for a, b in zip(total, part)]
            size += chunk.batch_size
        self.sizes.append(size)
        return Release(gradient=total, record=StepRecord(step, epoch, 0.5, 1.0, 1.0, "sum", "harness"),
                       loss_sum=0.0, batch_size=size)
