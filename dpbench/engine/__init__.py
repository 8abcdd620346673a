"""Per-sample gradient engines: how the per-example gradients (or just their norms and weighted sums)
of a physical batch are computed. The kernel clips against the norms an engine reports, so an engine
is trusted to report each example's norm of the very gradient it sums: the norms are exact at any scale
(:mod:`dpbench.engine.norms`), layers that mix examples are refused, and every run checks before its
first step that examples are independent and that every per-example gradient and norm is autograd's
(:mod:`dpbench.engine.independence`)."""

import torch

from dpbench.engine.functorch_engine import FunctorchEngine
from dpbench.engine.ghost_engine import GhostEngine, GhostGradients
from dpbench.engine.per_sample import GradientEngine, MaterializedGradients, PerSampleGradients

# torch's vmap registers its decompositions on its first call (reading its caller's frame and registering a
# finalizer): done here, once, so that its first call does not fall inside a model's contained forward pass
# (dpbench.privacy.containment refuses both there).
torch.func.vmap(torch.neg)(torch.zeros(1))

__all__ = [
    "FunctorchEngine",
    "GhostEngine",
    "GhostGradients",
    "GradientEngine",
    "MaterializedGradients",
    "PerSampleGradients",
]
