"""Poisson sampling: every example joins each batch independently with probability q.

The amplification-by-subsampling analysis of the accountant assumes exactly this: batch sizes are
random (Binomial(N, q)), batches may be empty, and nothing is padded or dropped. Randomness comes
from the sampler's own generator so that a checkpoint can restore it.
"""

from __future__ import annotations

import torch


class PoissonSampler:
    """Draws index sets of a dataset of size ``dataset_size`` with inclusion probability ``sampling_rate``."""

    def __init__(self, dataset_size: int, sampling_rate: float, seed: int) -> None:
        if not 0.0 < sampling_rate <= 1.0:
            raise ValueError(f"sampling rate must be in (0, 1], got {sampling_rate}")
        self.dataset_size = dataset_size
        self.sampling_rate = sampling_rate
        self._generator = torch.Generator().manual_seed(seed)

    def sample(self) -> torch.Tensor:
        """Indices (int64, ascending) of the next batch; possibly empty."""
        included = torch.rand(self.dataset_size, generator=self._generator) < self.sampling_rate
        return included.nonzero(as_tuple=True)[0]

    def state_dict(self) -> dict:
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._generator.set_state(state["generator"])
