"""Per-layer clipping: each parameter tensor (or layer) clipped to its own fixed threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dpbench.privacy.mechanism import Mechanism

SPLITS = ("equal", "proportional")
GROUPINGS = ("tensor", "layer")


class PerLayerClipping(Mechanism):
    """Per-layer clipping with a fixed, data-independent split of the clipping budget.

    Privacy argument: each example's gradient is clipped group by group, group l to C_l (factor
    min(1, C_l/||g_l||), enforced by the kernel), with sum_l C_l^2 = C^2 for C = ``max_grad_norm``,
    so one example moves the summed gradient by at most sqrt(sum_l C_l^2) = C in L2 norm. The kernel
    adds N(0, (zC)^2) to every coordinate (one noise scale for all groups, sized to that total
    sensitivity) and records (q, z) with sensitivity C: the same subsampled Gaussian mechanism as flat
    clipping, only the shape of the clipping region differs.

    ``split``: ``equal`` gives C_l = C / sqrt(L); ``proportional`` gives C_l proportional to
    sqrt(numel_l), i.e. C_l = C sqrt(numel_l / numel). ``groups``: ``tensor`` makes every parameter
    tensor a group; ``layer`` pairs each 1-D tensor (a bias) with the tensor just before it when that
    tensor's first dimension matches (a weight), as in ``model.parameters()`` order of a Linear or
    Conv layer."""

    name = "perlayer"

    def __init__(self, max_grad_norm: float, split: str = "equal", groups: str = "tensor") -> None:
        super().__init__(max_grad_norm)
        if split not in SPLITS:
            raise ValueError(f"per-layer split '{split}' is unknown; use one of {', '.join(SPLITS)}")
        if groups not in GROUPINGS:
            raise ValueError(f"per-layer groups '{groups}' is unknown; use one of {', '.join(GROUPINGS)}")
        self.split = split
        self.groups = groups
        self.group_thresholds: list[float] | None = None

    def parameter_groups(self, parameter_shapes: Sequence[torch.Size]) -> list[list[int]]:
        shapes = [torch.Size(s) for s in parameter_shapes]
        partition = layer_groups(shapes) if self.groups == "layer" else [[i] for i in range(len(shapes))]
        sizes = [sum(shapes[i].numel() for i in group) for group in partition]
        weights = [1.0] * len(partition) if self.split == "equal" else [float(n) for n in sizes]
        total = sum(weights)
        self.group_thresholds = [self.max_grad_norm * math.sqrt(w / total) for w in weights]
        return partition

    def thresholds(self, step: int, epoch: int) -> list[float]:
        if self.group_thresholds is None:
            raise RuntimeError(
                f"mechanism '{self.name}': thresholds depend on the parameter groups; call parameter_groups "
                "first (the kernel's StructuredPrivatizer does so when it is built)"
            )
        return list(self.group_thresholds)


def layer_groups(shapes: Sequence[torch.Size]) -> list[list[int]]:
    """Tensor indices grouped by layer: a 1-D tensor joins the tensor just before it if that one is not
    yet paired and its first dimension equals the 1-D tensor's length (weight, then bias)."""
    partition: list[list[int]] = []
    for index, shape in enumerate(shapes):
        previous = partition[-1] if partition else None
        if (
            previous is not None
            and len(previous) == 1
            and len(shape) == 1
            and len(shapes[previous[0]]) >= 1
            and shapes[previous[0]][0] == shape[0]
        ):
            previous.append(index)
        else:
            partition.append([index])
    return partition
