"""The examples a probe adds to the real batch: one neighbouring dataset per example.

All but one have a huge norm (``HUGE`` x the clipping threshold), so whatever clipping a plugin does,
the example's contribution reaches the plugin's bound; they differ in where that norm goes:

- ``spread``: a random direction over all parameters (flat clipping's worst case);
- ``every-layer``: a huge norm in every parameter tensor at once (per-layer clipping's worst case:
  each tensor hits its own threshold);
- ``one-layer``: all of it in the tensor with the least measured noise (by the upper confidence
  bound of its scale, so that small tensors whose scale happens to read low are not favoured);
- ``opposite-mean``: against the batch's mean clipped gradient, where a plugin that divides by the
  realised batch size moves most (the added example also shrinks everyone else's share);

and ``inside``: a tiny norm (``INSIDE`` x the threshold) in a random direction, inside every plausible
threshold. It barely moves the release but moves every statistic that counts examples under a
threshold (the count of unclipped examples in adaptive clipping), which a clipped example leaves
unchanged when the count is not centred: without it such a count, noised or raw, would go unseen.
"""

from __future__ import annotations

import torch

HUGE = 1e4
INSIDE = 1e-3
PROBE_EXAMPLES = ("spread", "every-layer", "one-layer", "opposite-mean", "inside")


def _unit(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    v = torch.randn(shape, generator=generator, dtype=torch.float64)
    return (v / v.norm()).to(like.device, like.dtype)


def probe_examples(
    per_sample_grads: list[torch.Tensor], noise_std: tuple[float, ...], max_grad_norm: float, generator: torch.Generator
) -> dict[str, list[torch.Tensor]]:
    """Name -> one example as a ``[1, *shape]`` tensor per parameter."""
    shapes = [g.shape[1:] for g in per_sample_grads]
    sizes = [s.numel() for s in shapes]
    huge = HUGE * max_grad_norm
    like = per_sample_grads[0]

    def split(flat: torch.Tensor) -> list[torch.Tensor]:
        return [part.reshape(1, *shape) for part, shape in zip(flat.split(sizes), shapes)]

    spread = huge * _unit(torch.Size([sum(sizes)]), generator, like)
    every_layer = [huge * _unit(shape, generator, like).unsqueeze(0) for shape in shapes]
    quietest = min(range(len(shapes)), key=lambda p: noise_std[p])
    one_layer = [
        huge * _unit(shape, generator, like).unsqueeze(0) if p == quietest else torch.zeros(1, *shape, dtype=like.dtype, device=like.device)
        for p, shape in enumerate(shapes)
    ]
    batch = per_sample_grads[0].shape[0]
    flat = torch.cat([g.reshape(batch, -1) for g in per_sample_grads], dim=1).to(torch.float64)
    clipped_mean = (flat * (max_grad_norm / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)).mean(dim=0)
    norm = clipped_mean.norm()
    opposite = -huge * (clipped_mean / norm).to(like.dtype) if norm > 0 else spread
    inside = INSIDE * max_grad_norm * _unit(torch.Size([sum(sizes)]), generator, like)
    return dict(zip(PROBE_EXAMPLES, (split(spread), every_layer, one_layer, split(opposite), split(inside))))


def with_example(per_sample_grads: list[torch.Tensor], example: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.cat([g, x.to(g.dtype)]) for g, x in zip(per_sample_grads, example)]
