"""The arithmetic of matching a generative model's sampling to given one-way marginals.

Three tools, each changing only *how many* samples fall where, never which latent draws they come
from, so whatever dependence on the latent the model learned is kept:

* :func:`rake_softmax`: one additive offset per class of a softmax such that the mean probability
  over the (weighted) draws equals the target shares (iterative proportional fitting);
* :func:`bit_offset`: one additive offset of a Bernoulli logit such that the mean probability equals
  a target rate (bisection);
* :func:`weighted_quantiles` and :func:`interpolate`: a monotone map of a continuous variable taking
  its quantiles to the target's (quantile mapping).
"""

from __future__ import annotations

import torch
from torch import Tensor

OFFSET_LIMIT = 30.0
"""A bit's offset stays within +-30 and a class's within 60 of the largest (odds moved by at most e^60),
so a target share of zero becomes a vanishing share rather than an infinite offset."""


def rake_softmax(logits: Tensor, weights: Tensor, target: Tensor, iterations: int = 200) -> Tensor:
    """Offsets ``[k]`` such that the ``weights``-weighted mean of softmax(logits + offsets) is ``target``.

    ``logits`` is ``[n, k]``; ``target`` is a vector of shares summing to one.
    """
    offsets = torch.zeros(logits.shape[1], dtype=logits.dtype)
    target = target.to(logits.dtype)
    weights = weights.to(logits.dtype) / weights.sum()
    for _ in range(iterations):
        mean = weights @ torch.softmax(logits + offsets, dim=1)
        offsets = offsets + torch.log(target.clamp_min(1e-300)) - torch.log(mean.clamp_min(1e-300))
        offsets = (offsets - offsets.max()).clamp(min=-2 * OFFSET_LIMIT)  # softmax ignores a common shift
    return offsets


def bit_offset(logits: Tensor, weights: Tensor, rate: float, iterations: int = 60) -> float:
    """The offset such that the ``weights``-weighted mean of sigmoid(logits + offset) is ``rate``."""
    low, high = -OFFSET_LIMIT, OFFSET_LIMIT
    for _ in range(iterations):
        middle = (low + high) / 2
        mean = float((weights * torch.sigmoid(logits + middle)).sum() / weights.sum())
        low, high = (middle, high) if mean < rate else (low, middle)
    return (low + high) / 2


def weighted_quantiles(values: Tensor, weights: Tensor, probabilities: Tensor) -> Tensor:
    """Quantiles of the distribution putting mass proportional to ``weights`` on ``values``."""
    order = torch.argsort(values)
    sorted_values, sorted_weights = values[order], weights[order].to(values.dtype)
    cumulative = torch.cumsum(sorted_weights, 0)
    midpoints = (cumulative - 0.5 * sorted_weights) / cumulative[-1]  # each value at the middle of its mass
    return interpolate(probabilities.to(values.dtype), midpoints, sorted_values)


def interpolate(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation through (xp, fp), ``xp`` non-decreasing; constant beyond its ends
    (numpy's ``interp``)."""
    right = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, len(xp) - 1)
    left = right - 1
    span = (xp[right] - xp[left]).clamp_min(1e-12)
    fraction = ((x - xp[left]) / span).clamp(0.0, 1.0)
    return fp[left] + fraction * (fp[right] - fp[left])
