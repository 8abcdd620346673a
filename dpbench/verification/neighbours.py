"""The neighbouring batches a probe measures: the real batch with one example added, or with one removed.

**Added examples.** Most have a huge norm (``HUGE`` x the clipping threshold), so whatever clipping a plugin
does, the example's contribution reaches the plugin's bound; they differ in where that norm goes:

- ``spread``: a random direction over all parameters (flat clipping's worst case);
- ``every-layer``: a huge norm in every parameter tensor at once (per-layer clipping's worst case:
  each tensor hits its own threshold);
- ``one-layer``: all of it in the tensor with the least measured noise (by the upper confidence
  bound of its scale, so that small tensors whose scale happens to read low are not favoured);
- ``one-coordinate``: all of it on the single coordinate with the least measured noise (noise missing on
  some coordinates is invisible to per-tensor scales and to random directions; measured at
  ``alpha / n``, since the coordinate was chosen among ``n`` from the same draws);
- ``opposite-mean``: against the batch's mean clipped gradient, where a plugin that divides by the
  realised batch size moves most (the added example also shrinks everyone else's share);

``inside``: a tiny norm (``INSIDE`` x the threshold) in a random direction, inside every plausible
threshold. It barely moves the release but moves every statistic that counts examples under a
threshold (the count of unclipped examples in adaptive clipping), which a clipped example leaves
unchanged when the count is not centred: without it such a count, noised or raw, would go unseen;

and a **ladder of norms**, ``norm-<r>C``: random directions at ``LADDER_RUNGS`` norms a factor
``LADDER_RATIO`` apart from ``LADDER_BASE`` x C, all scaled by one secret factor drawn log-uniformly in
``[1, LADDER_RATIO)``. A plugin whose sensitivity exceeds C only for some norms (it clips only above
1000 C, or drops huge examples and adds less noise) is measured at a norm where it does: one rung always
lies in ``[2 C, 8 C)``, ``[8 C, 32 C)`` and so on, so one that lets norms up to ``T >= 8 C`` through
unclipped is caught at every probe, and one with a smaller ``T`` at a share of probes. Four far rungs, at
``10^6``, ``10^9``, ``10^12`` and ``10^15`` x C x the same factor, catch a plugin that stops clipping only
above some norm ``T`` beyond the near ladder: every ``T`` under 1e15 C has a rung above it at every probe. One
that misbehaves only in a window of norms between two rungs (say only in [1e7 C, 1e8 C]) is caught only at the
probes whose secret factor puts a rung in it, and one that misbehaves only above 4e15 C not at all.

Each added example goes in at a row of its own, drawn by the probe's secret generator (``spread`` always
last, as the state-channel test needs, and ``every-layer`` always first), so a plugin that treats some row
specially (releases row 0 raw, leaves the last row out) is measured where it does.

**Removed examples.** ``remove-first`` and ``remove-random``: the real batch without its first row and
without a random other row (for batches of at least two rows), the add/remove neighbour in the other
direction, at the positions where a row-dependent plugin moves most.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

HUGE = 1e4
INSIDE = 1e-3
LADDER_BASE, LADDER_RATIO, LADDER_RUNGS = 0.5, 4.0, 7
# Rungs far above the ladder, at 10^e C (times the same secret factor): a plugin that clips only above 1e6 C is
# measured there. The highest, under 4e15 C, keeps an honest float32 plugin's squared norms (under 1.6e31 C^2,
# 1.6e33 at C = 10) far below float32's 3.4e38.
FAR_RUNGS = (6, 9, 12, 15)
QUIETEST_COORDINATE = "one-coordinate"
HUGE_EXAMPLES = ("spread", "every-layer", "one-layer", QUIETEST_COORDINATE, "opposite-mean")
REMOVALS = ("remove-first", "remove-random")
NEIGHBOURS_PER_PROBE = len(HUGE_EXAMPLES) + 1 + LADDER_RUNGS + len(FAR_RUNGS) + len(REMOVALS)


@dataclass(frozen=True)
class Neighbour:
    """The real batch with ``example`` (one ``[1, *shape]`` tensor per parameter) inserted at row
    ``position``, or, with no example, without its row ``position``."""

    name: str
    position: int
    example: list[torch.Tensor] | None = None

    def batch(self, per_sample_grads: list[torch.Tensor]) -> list[torch.Tensor]:
        p = self.position
        if self.example is None:
            return [torch.cat([g[:p], g[p + 1:]]) for g in per_sample_grads]
        return [torch.cat([g[:p], x.to(g.dtype), g[p:]]) for g, x in zip(per_sample_grads, self.example)]


def _unit(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    v = torch.randn(shape, generator=generator, dtype=torch.float64)
    return (v / v.norm()).to(like.device, like.dtype)


def ladder_norms(max_grad_norm: float, secret: torch.Generator) -> list[float]:
    """The ladder's norms: ``LADDER_BASE x LADDER_RATIO^k x C x j`` and ``10^e x C x j`` for ``e`` in
    ``FAR_RUNGS``, one log-uniform ``j`` in ``[1, LADDER_RATIO)``."""
    jitter = LADDER_RATIO ** float(torch.rand((), generator=secret, dtype=torch.float64))
    near = [LADDER_BASE * LADDER_RATIO**k * jitter * max_grad_norm for k in range(LADDER_RUNGS)]
    return near + [10.0**e * jitter * max_grad_norm for e in FAR_RUNGS]


def added_examples(
    per_sample_grads: list[torch.Tensor], noise_std: tuple[float, ...], quietest: int, max_grad_norm: float,
    generator: torch.Generator, secret: torch.Generator,
) -> dict[str, list[torch.Tensor]]:
    """Name -> one example as a ``[1, *shape]`` tensor per parameter; ``quietest`` is the flat index of the
    coordinate with the least measured noise, ``noise_std`` the per-tensor scales."""
    shapes = [g.shape[1:] for g in per_sample_grads]
    sizes = [s.numel() for s in shapes]
    huge = HUGE * max_grad_norm
    like = per_sample_grads[0]

    def split(flat: torch.Tensor) -> list[torch.Tensor]:
        return [part.reshape(1, *shape) for part, shape in zip(flat.split(sizes), shapes)]

    spread = huge * _unit(torch.Size([sum(sizes)]), generator, like)
    every_layer = [huge * _unit(shape, generator, like).unsqueeze(0) for shape in shapes]
    quietest_tensor = min(range(len(shapes)), key=lambda p: noise_std[p])
    one_layer = [
        huge * _unit(shape, generator, like).unsqueeze(0) if p == quietest_tensor else torch.zeros(1, *shape, dtype=like.dtype, device=like.device)
        for p, shape in enumerate(shapes)
    ]
    one_coordinate = torch.zeros(sum(sizes), dtype=like.dtype, device=like.device)
    one_coordinate[quietest] = huge
    batch = per_sample_grads[0].shape[0]
    flat = torch.cat([g.reshape(batch, -1) for g in per_sample_grads], dim=1).to(torch.float64)
    clipped_mean = (flat * (max_grad_norm / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)).mean(dim=0)
    norm = clipped_mean.norm()
    opposite = -huge * (clipped_mean / norm).to(like.dtype) if norm > 0 else spread
    inside = INSIDE * max_grad_norm * _unit(torch.Size([sum(sizes)]), generator, like)
    examples = dict(zip(HUGE_EXAMPLES, (split(spread), every_layer, one_layer, split(one_coordinate), split(opposite))))
    examples["inside"] = split(inside)
    for r in ladder_norms(max_grad_norm, secret):
        examples[f"norm-{r / max_grad_norm:.3g}C"] = split(r * _unit(torch.Size([sum(sizes)]), generator, like))
    return examples


def probe_neighbours(
    per_sample_grads: list[torch.Tensor], noise_std: tuple[float, ...], quietest: int, max_grad_norm: float,
    generator: torch.Generator, secret: torch.Generator,
) -> list[Neighbour]:
    """Every neighbour a probe measures: the added examples at their rows (``spread`` last, ``every-layer``
    first, the others at rows drawn from ``secret``), then the removals."""
    batch = per_sample_grads[0].shape[0]
    neighbours = []
    for name, example in added_examples(per_sample_grads, noise_std, quietest, max_grad_norm, generator, secret).items():
        position = {"spread": batch, "every-layer": 0}.get(name)
        if position is None:
            position = int(torch.randint(batch + 1, (), generator=secret))
        neighbours.append(Neighbour(name, position, example))
    if batch >= 2:
        neighbours.append(Neighbour("remove-first", 0))
        neighbours.append(Neighbour("remove-random", int(torch.randint(1, batch, (), generator=secret))))
    return neighbours


def with_example(per_sample_grads: list[torch.Tensor], example: list[torch.Tensor]) -> list[torch.Tensor]:
    """The batch with ``example`` appended as its last row."""
    return Neighbour("appended", per_sample_grads[0].shape[0], example).batch(per_sample_grads)

