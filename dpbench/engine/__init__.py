"""Per-sample gradient engines: how the per-example gradients (or just their norms and weighted sums)
of a physical batch are computed. Engines are untrusted for privacy: the kernel bounds whatever they
return by clipping against the norms it is given."""

from dpbench.engine.functorch_engine import FunctorchEngine
from dpbench.engine.ghost_engine import GhostEngine, GhostGradients
from dpbench.engine.per_sample import GradientEngine, MaterializedGradients, PerSampleGradients

__all__ = [
    "FunctorchEngine",
    "GhostEngine",
    "GhostGradients",
    "GradientEngine",
    "MaterializedGradients",
    "PerSampleGradients",
]
