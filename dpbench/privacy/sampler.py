"""Poisson sampling: every example joins each batch independently with probability q.

The amplification-by-subsampling analysis of the accountant assumes exactly this: batch sizes are
random (Binomial(N, q)), batches may be empty, and nothing is padded or dropped. Randomness comes
from the sampler's own generator so that a checkpoint can restore it.

The inclusions are drawn through the gaps between included indices: for independent Bernoulli(q)
inclusions, the distance from one included index to the next (and from -1 to the first) is i.i.d.
Geometric(q) on {1, 2, ...}, and conversely, so drawing gaps until they pass N gives exactly the same
law as one coin per example, with about Nq random numbers instead of N (at the telemetry workload's
N = 950,000 and q = 0.004: 4 ms less per step).
"""

from __future__ import annotations

import math

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
        n, q = self.dataset_size, self.sampling_rate
        if q == 1.0:
            return torch.arange(n)
        expected = n * q
        block = int(expected + 6 * math.sqrt(expected) + 16)  # one block suffices but for 1 draw in ~1e9
        parts, last = [], -1.0
        while True:
            # float64: gaps and positions are exact integers far beyond any dataset size
            gaps = torch.empty(block, dtype=torch.float64).geometric_(q, generator=self._generator)
            positions = last + torch.cumsum(gaps, dim=0)
            parts.append(positions[positions < n])
            if positions[-1] >= n:
                return torch.cat(parts).to(torch.int64)
            last = float(positions[-1])

    def state_dict(self) -> dict:
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._generator.set_state(state["generator"])
