"""Input normalisation by per-channel statistics of the training set, released with differential privacy.

Tramèr & Boneh (2021) normalise ScatterNet features either per example (a parameter-free GroupNorm, no
privacy cost) or by the training set's per-channel mean and variance ("data normalisation", their choice on
MNIST and CIFAR-10), released with Gaussian noise before training. :class:`ReleasedNormalization` is the
second: a fixed affine map ``(x - mean) / sqrt(variance + eps)`` per channel, whose ``mean`` and ``variance``
are buffers set once from released sums.

Privacy argument. The module computes nothing from data. The classification workload
(:meth:`dpbench.data.splits.DatasetSplits.release_statistics`, trusted harness code) computes each training
example's per-channel spatial mean and mean square of its own input (one row per example, so adding or
removing an example adds or removes one row), and hands the rows to the kernel's
:func:`~dpbench.privacy.statistics_release.release_sum`, which clips every row to the declared L2 bound and
adds N(0, (noise_multiplier * bound)^2) to each coordinate of the sum: two Gaussian mechanisms of sensitivity
``bound``, recorded in the ledger (sampling rate 1) and accounted by noise calibration with the training
steps. The statistics are the noised sums divided by the number of training examples, which dpbench treats
as public (it is also in the sampling rate B / N); everything after is post-processing. The map is the same
for every example, so no example's output depends on another example (the engine's independence check
runs on it like on any layer), and it has no parameters, so training never changes it.

The bounds are configuration (root-mean-square per channel, so the L2 bound grows as the square root of the
channel count), and the guarantee holds whatever they are: rows above them are scaled down, which biases the
statistics toward 0, never the sensitivity. Choosing them from the private data is a choice that ε does not
charge, like any hyper-parameter; the defaults were read off MNIST's training set, so they are free only where
MNIST is not the private data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dpbench.privacy.statistics_release import StatisticsRelease

MEAN, SQUARE = "mean", "square"


class StatisticsNotReleasedError(RuntimeError):
    """The module was used before its statistics were released."""


class ReleasedNormalization(nn.Module):
    """Per-channel ``(x - mean) / sqrt(variance + eps)`` of inputs ``[B, channels, *spatial]``, with the
    statistics released once by the workload before training (see the module docstring for the privacy
    argument).

    ``noise_multiplier``: the Gaussian's std over the bound on each released sum (Tramèr & Boneh use 8).
    ``mean_rms_bound`` / ``square_rms_bound``: the per-example L2 bounds of the channel-mean and
    channel-mean-square vectors, divided by ``sqrt(channels)``. ``eps`` is added to the variance, as in BatchNorm.
    """

    def __init__(self, channels: int, noise_multiplier: float = 8.0, mean_rms_bound: float = 0.11,
                 square_rms_bound: float = 0.22, eps: float = 1e-5) -> None:
        super().__init__()
        for name, value in (("noise_multiplier", noise_multiplier), ("mean_rms_bound", mean_rms_bound),
                            ("square_rms_bound", square_rms_bound), ("eps", eps)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ReleasedNormalization: {name} must be finite and > 0, got {value}")
        self.channels = channels
        self.noise_multiplier = float(noise_multiplier)
        self.bounds = {MEAN: mean_rms_bound * math.sqrt(channels), SQUARE: square_rms_bound * math.sqrt(channels)}
        self.eps = float(eps)
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.ones(channels))
        self.register_buffer("released", torch.tensor(False))

    def releases(self, name: str) -> tuple[StatisticsRelease, StatisticsRelease]:
        """What the workload releases for this module (``name``: its path in the model)."""
        return tuple(StatisticsRelease(f"{name}.{statistic}", self.bounds[statistic], self.noise_multiplier)
                     for statistic in (MEAN, SQUARE))

    @torch.no_grad()
    def set_statistics(self, noised_sums: dict[str, Tensor], count: int) -> None:
        """Set the statistics from the released sums of ``count`` examples' channel means and mean squares."""
        mean = noised_sums[MEAN] / count
        variance = noised_sums[SQUARE] / count - mean.square()
        self.mean.copy_(mean)
        self.variance.copy_(variance.clamp_min(0.0))  # a noised variance may fall below 0
        self.released.fill_(True)

    def forward(self, inputs: Tensor) -> Tensor:
        if not bool(self.released):
            raise StatisticsNotReleasedError(
                "ReleasedNormalization has no statistics: they are released by the workload before training "
                "(python -m dpbench does it); a model built by hand needs them from a released run's checkpoint")
        shape = (1, self.channels) + (1,) * (inputs.dim() - 2)
        return (inputs - self.mean.view(shape)) * torch.rsqrt(self.variance.view(shape) + self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, noise_multiplier={self.noise_multiplier:g}, bounds={self.bounds}"


def channel_statistics(features: Tensor) -> dict[str, Tensor]:
    """Each example's per-channel spatial mean and mean square of ``[n, channels, *spatial]``: ``[n, channels]``
    each (one row per example: a row depends on its example alone)."""
    flat = features.reshape(features.shape[0], features.shape[1], -1)
    return {MEAN: flat.mean(dim=2), SQUARE: flat.square().mean(dim=2)}
