"""Hand-written researcher-form plugins, each the near miss of one built-in, each broken in a way
that has been seen in practice. They divide by the expected batch size and use torch's global
generator (as the harness expects), so only the named flaw separates them from the built-ins."""

from __future__ import annotations

import math

import torch

END_RATIO = 0.5


class HandWrittenPlugin:
    def __init__(
        self, max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs, target_epsilon, target_delta
    ) -> None:
        self.max_grad_norm = max_grad_norm
        self.noise_multiplier = noise_multiplier
        self.expected_batch_size = batch_size
        self.epochs = epochs

    def get_effective_sigma(self, step: int, epoch: int) -> float:
        return self.noise_multiplier


def clip_each_tensor(per_sample_grads: list[torch.Tensor], bound: float) -> list[torch.Tensor]:
    """Sum over the batch of each tensor's per-example gradient clipped to ``bound`` on its own."""
    sums = []
    for g in per_sample_grads:
        norms = g.flatten(1).norm(dim=1)
        scale = torch.clamp(bound / (norms + 1e-12), max=1.0)
        sums.append(torch.einsum("b,b...->...", scale, g))
    return sums


def clip_flat(per_sample_grads: list[torch.Tensor], bound: float) -> list[torch.Tensor]:
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(dim=1) for g in per_sample_grads))
    scale = torch.clamp(bound / (norms + 1e-12), max=1.0)
    return [torch.einsum("b,b...->...", scale, g) for g in per_sample_grads]


def noised(sums: list[torch.Tensor], stds: list[float], batch: float) -> list[torch.Tensor]:
    return [(s + std * torch.randn(s.shape)) / batch for s, std in zip(sums, stds)]


def exponential_shape(epoch: int, epochs: int) -> float:
    return END_RATIO ** (epoch / (epochs - 1))


class PerLayerOwnNoise(HandWrittenPlugin):
    """Thresholds C/sqrt(L), right; but each layer noised at its *own* threshold, z C/sqrt(L), while
    the claim is z for sensitivity C: the true multiplier is z/sqrt(L)."""

    def clip_and_noise(self, per_sample_grads, step, epoch):
        bound = self.max_grad_norm / math.sqrt(len(per_sample_grads))
        sums = clip_each_tensor(per_sample_grads, bound)
        return noised(sums, [self.noise_multiplier * bound] * len(sums), self.expected_batch_size)


class PerLayerUnscaled(HandWrittenPlugin):
    """Every layer clipped to the full C and noised with z C: the sensitivity claim C ignores that L
    layers can each move by C at once (true sensitivity C sqrt(L))."""

    def clip_and_noise(self, per_sample_grads, step, epoch):
        sums = clip_each_tensor(per_sample_grads, self.max_grad_norm)
        return noised(sums, [self.noise_multiplier * self.max_grad_norm] * len(sums), self.expected_batch_size)


class MeanSigmaDecay(HandWrittenPlugin):
    """Exponentially decaying noise z s(e), reported as the schedule's mean multiplier: right on
    average, too little noise in late epochs."""

    def clip_and_noise(self, per_sample_grads, step, epoch):
        std = self.noise_multiplier * exponential_shape(epoch, self.epochs) * self.max_grad_norm
        sums = clip_flat(per_sample_grads, self.max_grad_norm)
        return noised(sums, [std] * len(sums), self.expected_batch_size)

    def get_effective_sigma(self, step, epoch):
        shapes = [exponential_shape(e, self.epochs) for e in range(self.epochs)]
        return self.noise_multiplier * sum(shapes) / len(shapes)


class RawMomentum(HandWrittenPlugin):
    """Heavy-ball momentum on the *clipped raw* sums, noise added afterwards: each example's
    contribution is released again, under fresh noise, at every later step."""

    beta = 0.9

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = None

    def clip_and_noise(self, per_sample_grads, step, epoch):
        sums = clip_flat(per_sample_grads, self.max_grad_norm)
        self.buffer = sums if self.buffer is None else [self.beta * b + s for b, s in zip(self.buffer, sums)]
        std = self.noise_multiplier * self.max_grad_norm
        return noised(self.buffer, [std] * len(sums), self.expected_batch_size)


class NormalizedNoiseAtClipNorm(HandWrittenPlugin):
    """Automatic clipping that forgets the radius: g / (||g|| + gamma) has sensitivity 1, but the
    noise is sized to ``max_grad_norm`` as if the contributions had been scaled to it."""

    def clip_and_noise(self, per_sample_grads, step, epoch):
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(dim=1) for g in per_sample_grads))
        sums = [torch.einsum("b,b...->...", 1.0 / (norms + 0.01), g) for g in per_sample_grads]
        std = self.noise_multiplier * self.max_grad_norm
        return noised(sums, [std] * len(sums), self.expected_batch_size)


class PerLayerDecayOwnNoise(HandWrittenPlugin):
    """Per-layer clipping with decaying noise, each layer noised at its own threshold (as
    :class:`PerLayerOwnNoise`) and the schedule reported honestly."""

    def clip_and_noise(self, per_sample_grads, step, epoch):
        bound = self.max_grad_norm / math.sqrt(len(per_sample_grads))
        std = self.noise_multiplier * exponential_shape(epoch, self.epochs) * bound
        sums = clip_each_tensor(per_sample_grads, bound)
        return noised(sums, [std] * len(sums), self.expected_batch_size)

    def get_effective_sigma(self, step, epoch):
        return self.noise_multiplier * exponential_shape(epoch, self.epochs)
