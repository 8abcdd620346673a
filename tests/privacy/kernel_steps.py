"""Steps of the structured kernel on a small fixed model, for the tests that attack it (isolation, containment)."""

import torch

from dpbench.engine.per_sample import MaterializedGradients
from dpbench.privacy.mechanism import Mechanism
from dpbench.privacy.privatizer import StructuredPrivatizer

SHAPES = [torch.Size([3, 2]), torch.Size([2])]


def batch(seed: int = 0, size: int = 6) -> list[torch.Tensor]:
    """Per-example gradients of ``size`` examples, one ``[size, *shape]`` tensor per parameter."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn((size, *s), generator=generator) for s in SHAPES]


def run_steps(mechanism: Mechanism, steps: int = 2) -> list:
    """The releases of ``steps`` steps of ``mechanism``, each on its own batch."""
    privatizer = StructuredPrivatizer(mechanism, SHAPES, 10.0, 6.0, 0.1, generator=torch.Generator().manual_seed(1))
    return [privatizer.release([MaterializedGradients(batch(step))], step, 0) for step in range(steps)]
