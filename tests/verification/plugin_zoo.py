"""A zoo of researcher-form plugins for the verifier: broken ones, one per bug class seen in practice,
each with the verdict and reason the verifier must give, and correct ones it must pass.

All are written as researchers write them: per-sample gradients in, the noised average out, noise
from torch's global generator unless the bug is about the generator. Unless the bug says otherwise
they clip flat to C, add N(0, (zC)^2) and divide by the expected batch size."""

from __future__ import annotations

import copy
import math
import secrets

import numpy as np
import torch


class Base:
    def __init__(self, max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs, target_epsilon, target_delta):
        self.max_grad_norm = max_grad_norm
        self.noise_multiplier = noise_multiplier
        self.expected_batch_size = batch_size
        self.steps_per_epoch = round(dataset_size / batch_size)
        self.total_steps = epochs * self.steps_per_epoch

    def get_effective_sigma(self, step, epoch):
        return self.noise_multiplier

    def clipped_sum(self, grads, bound=None):
        bound = self.max_grad_norm if bound is None else bound
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        scale = torch.clamp(bound / (norms + 1e-12), max=1.0)
        return [torch.einsum("b,b...->...", scale, g) for g in grads]

    def noise(self, shape, std, generator=None):
        return std * torch.randn(shape, generator=generator)

    def release(self, sums, std):
        return [(s + self.noise(s.shape, std)) / self.expected_batch_size for s in sums]


# ------------------------------------------------------------------------------------------ broken
class RawNormAdaptive(Base):
    """Adaptive clipping whose threshold is the median of the raw per-example norms (no noise on it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip_norm = self.max_grad_norm

    def clip_and_noise(self, grads, step, epoch):
        out = self.release(self.clipped_sum(grads, self.clip_norm), self.noise_multiplier * self.clip_norm)
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        self.clip_norm = float(norms.median())
        return out


class PerLayerOwnThreshold(Base):
    """Each tensor clipped to C_l = C / sqrt(L) and noised at sigma C_l: true multiplier z / sqrt(L)."""

    def clip_and_noise(self, grads, step, epoch):
        bound = self.max_grad_norm / math.sqrt(len(grads))
        sums = [self.clipped_sum([g], bound)[0] for g in grads]
        return self.release(sums, self.noise_multiplier * bound)


class NoiseOnOneTensor(Base):
    """Each tensor clipped to C / sqrt(L); noise (at the full sensitivity) only on the first tensor."""

    def clip_and_noise(self, grads, step, epoch):
        bound = self.max_grad_norm / math.sqrt(len(grads))
        sums = [self.clipped_sum([g], bound)[0] for g in grads]
        std = self.noise_multiplier * self.max_grad_norm
        return [(s + (self.noise(s.shape, std) if i == 0 else 0)) / self.expected_batch_size for i, s in enumerate(sums)]


class ScheduleReportedAsMean(Base):
    """Noise decays linearly from 1.6 z to 0.4 z over the run; reports the mean, z."""

    def clip_and_noise(self, grads, step, epoch):
        factor = 1.6 - 1.2 * step / max(self.total_steps - 1, 1)
        return self.release(self.clipped_sum(grads), factor * self.noise_multiplier * self.max_grad_norm)


class SkipsNoise(Base):
    """Skips the noise on every fifth step ("warm-up" steps)."""

    def clip_and_noise(self, grads, step, epoch):
        std = 0.0 if step % 5 == 2 else self.noise_multiplier * self.max_grad_norm
        return self.release(self.clipped_sum(grads), std)


class NoiseBeforeClipping(Base):
    """Adds N(0, (zC)^2) to every example's gradient, then clips and sums."""

    def clip_and_noise(self, grads, step, epoch):
        noisy = [g + self.noise(g.shape, self.noise_multiplier * self.max_grad_norm) for g in grads]
        return [s / self.expected_batch_size for s in self.clipped_sum(noisy)]


class ConstantSeededGenerator(Base):
    """Draws its noise from its own generator seeded with a constant: the noise is known to everyone."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator().manual_seed(1234)

    def clip_and_noise(self, grads, step, epoch):
        std = self.noise_multiplier * self.max_grad_norm
        return [(s + self.noise(s.shape, std, self.generator)) / self.expected_batch_size for s in self.clipped_sum(grads)]


class ReseededEveryStep(Base):
    """Creates a generator seeded with the step number at every call."""

    def clip_and_noise(self, grads, step, epoch):
        generator = torch.Generator().manual_seed(step)
        std = self.noise_multiplier * self.max_grad_norm
        return [(s + self.noise(s.shape, std, generator)) / self.expected_batch_size for s in self.clipped_sum(grads)]


class OverstatedSigma(Base):
    """Adds 0.6 z C noise and reports z."""

    def clip_and_noise(self, grads, step, epoch):
        return self.release(self.clipped_sum(grads), 0.6 * self.noise_multiplier * self.max_grad_norm)


class RawGradientEMA(Base):
    """Keeps an EMA of the raw (unclipped) mean gradient and adds it to the release."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ema = None

    def clip_and_noise(self, grads, step, epoch):
        out = self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm)
        if self.ema is not None:
            out = [o + 0.5 * e for o, e in zip(out, self.ema)]
        mean = [g.mean(0) for g in grads]
        self.ema = mean if self.ema is None else [0.9 * e + 0.1 * m for e, m in zip(self.ema, mean)]
        return out


class UnnoisedMomentum(Base):
    """Momentum over the clipped, un-noised averages; noise added to the momentum afterwards."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.momentum = None

    def clip_and_noise(self, grads, step, epoch):
        average = [s / self.expected_batch_size for s in self.clipped_sum(grads)]
        self.momentum = average if self.momentum is None else [0.9 * m + a for m, a in zip(self.momentum, average)]
        std = self.noise_multiplier * self.max_grad_norm / self.expected_batch_size
        return [m + self.noise(m.shape, std) for m in self.momentum]


class RealisedBatchDivision(Base):
    """Divides the clipped sum and the noise by the realised batch size."""

    def clip_and_noise(self, grads, step, epoch):
        batch = grads[0].shape[0]
        std = self.noise_multiplier * self.max_grad_norm
        return [(s + self.noise(s.shape, std)) / batch for s in self.clipped_sum(grads)]


class UnpaidAdaptiveCount(Base):
    """Adaptive clipping (Andrew et al. 2021) that noises its centred count of unclipped examples but
    does not raise the gradient noise to pay for that release: true multiplier (z^-2 + (2 sigma_b)^-2)^-1/2,
    0.85 z here."""

    count_noise_share = 40.0  # sigma_b = expected batch / 40

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip_norm = self.max_grad_norm
        self.count_noise = self.expected_batch_size / self.count_noise_share

    def gradient_multiplier(self):
        return self.noise_multiplier

    def clip_and_noise(self, grads, step, epoch):
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        out = self.release(self.clipped_sum(grads, self.clip_norm), self.gradient_multiplier() * self.clip_norm)
        centred = float(((norms <= self.clip_norm).double() - 0.5).sum()) + float(self.noise((), self.count_noise))
        unclipped = centred / self.expected_batch_size + 0.5
        self.clip_norm *= math.exp(-0.2 * (unclipped - 0.5))
        return out


class NoiseOnlyAtStepZero(Base):
    """Adds noise at the first step only (where a verifier that probes only the start would look)."""

    def clip_and_noise(self, grads, step, epoch):
        std = self.noise_multiplier * self.max_grad_norm if step == 0 else 0.0
        return self.release(self.clipped_sum(grads), std)


class NoiseOnlyAtEpochStarts(Base):
    """Adds noise at the first step of every epoch only (the steps a verifier that always probed each epoch's
    first step would look at; such a verifier passed it once the overhead cap dropped its extra probes)."""

    def clip_and_noise(self, grads, step, epoch):
        std = self.noise_multiplier * self.max_grad_norm if step % self.steps_per_epoch == 0 else 0.0
        return self.release(self.clipped_sum(grads), std)


class UnpaidUncentredCount(UnpaidAdaptiveCount):
    """As UnpaidAdaptiveCount, but counting unclipped examples without centring (sensitivity 1, so
    sigma_b = expected batch / 20 gives the same 0.85 z): an added example that is clipped leaves the
    count unchanged; only one inside the threshold moves it."""

    count_noise_share = 20.0

    def clip_and_noise(self, grads, step, epoch):
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        out = self.release(self.clipped_sum(grads, self.clip_norm), self.gradient_multiplier() * self.clip_norm)
        count = float((norms <= self.clip_norm).sum()) + float(self.noise((), self.count_noise))
        self.clip_norm *= math.exp(-0.2 * (count / self.expected_batch_size - 0.5))
        return out


class RawUncentredCount(Base):
    """Adaptive clipping from the raw, un-noised count of unclipped examples (not centred)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip_norm = self.max_grad_norm

    def clip_and_noise(self, grads, step, epoch):
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        out = self.release(self.clipped_sum(grads, self.clip_norm), self.noise_multiplier * self.clip_norm)
        self.clip_norm *= math.exp(-0.2 * (float((norms <= self.clip_norm).sum()) / self.expected_batch_size - 0.5))
        return out


class StepDecayReportedAsMean(Base):
    """Noise decaying by 0.2% a step, normalised so that its mean over the planned steps is z, and z reported:
    over a short run it looks correct, late in a long schedule it is about half the claim."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = 1.0 / (sum(0.998**t for t in range(self.total_steps)) / self.total_steps)

    def clip_and_noise(self, grads, step, epoch):
        std = self.noise_multiplier * self.max_grad_norm * self.scale * 0.998**step
        return self.release(self.clipped_sum(grads), std)


class NoiseOnlyWhenCopied(Base):
    """Adds its noise only in deep copies of itself (the verifier probes copies), none in the object
    the harness trains with. Not in BROKEN: the harness releases only from copies, so it is harmless
    (tests/verification/test_release_is_measured.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.copied = False

    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        clone.__dict__ = copy.deepcopy(self.__dict__, memo)
        clone.copied = True
        return clone

    def clip_and_noise(self, grads, step, epoch):
        std = self.noise_multiplier * self.max_grad_norm if self.copied else 0.0
        return self.release(self.clipped_sum(grads), std)


class NoiseOnlyUnderForeignSeed(Base):
    """Adds its noise only when torch's global seed is not the one it was built under (as it was when only
    the verifier's probes were seeded), none otherwise. Not in BROKEN: the harness makes every release under
    a seed of its own, so it is harmless (tests/verification/test_release_is_measured.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.home_seed = torch.initial_seed()

    def clip_and_noise(self, grads, step, epoch):
        probed = torch.initial_seed() != self.home_seed
        return self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm if probed else 0.0)


class NoiseOnlyAfterTheFirstCall(Base):
    """Adds its noise only from its second call of a step on (counted in a class attribute every copy
    shares): the kernel's release, the first call, has none; the verifier's other draws have it, and its
    shifts (same stream as the release, one example added) then carry a whole noise vector. (Reading the
    call stack to find the verifier instead is refused outright: tests/privacy/test_containment.py.)"""

    calls: dict[int, int] = {}

    def clip_and_noise(self, grads, step, epoch):
        type(self).calls[step] = type(self).calls.get(step, 0) + 1
        probed = type(self).calls[step] > 1
        return self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm if probed else 0.0)


class ClaimsMoreAfterAProbe(Base):
    """Adds z C noise, but reports 10 z for a step whose release was followed by other calls (the verifier's
    draws, counted in a class attribute every copy shares). Not in BROKEN: the harness reads the claim once,
    right after the release and before any probe (tests/verification/test_release_is_measured.py)."""

    calls: dict[int, int] = {}

    def clip_and_noise(self, grads, step, epoch):
        type(self).calls[step] = type(self).calls.get(step, 0) + 1
        return self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm)

    def get_effective_sigma(self, step, epoch):
        return self.noise_multiplier * (10.0 if type(self).calls.get(step, 0) > 1 else 1.0)


class StopsNoisingAfterAProbe(Base):
    """Counts its calls per step in a class attribute (every copy shares it); once a step of this epoch has had
    more than one call (the release and a probe's), it stops noising for the rest of the epoch. Not in BROKEN:
    the verifier puts its classes' and module's data back after every probe, so it never sees one
    (tests/verification/test_release_is_measured.py)."""

    calls: dict[int, int] = {}

    def counter(self) -> dict[int, int]:
        return type(self).calls

    def clip_and_noise(self, grads, step, epoch):
        calls = self.counter()
        calls[step] = calls.get(step, 0) + 1
        probed = any(n > 1 for s, n in calls.items() if s // self.steps_per_epoch == epoch and s < step)
        return self.release(self.clipped_sum(grads), 0.0 if probed else self.noise_multiplier * self.max_grad_norm)


CALLS_PER_STEP: dict[int, int] = {}


class StopsNoisingAfterAProbeSeenInAGlobal(StopsNoisingAfterAProbe):
    """The same, counting in a module-level dict."""

    def counter(self) -> dict[int, int]:
        return CALLS_PER_STEP


# (class, verdict, reason: a substring of a finding's probe, bound on measured / claimed of the
# violations: what the bug leaves of the claimed multiplier)
BROKEN = [
    (RawNormAdaptive, "LEAK", "state:clip_norm", None),
    (PerLayerOwnThreshold, "VIOLATION", "every-layer", 0.6),  # z / sqrt(4)
    (NoiseOnOneTensor, "VIOLATION", "", 0.0),  # un-noised tensors
    (ScheduleReportedAsMean, "VIOLATION", "", 0.9),  # late steps only
    (SkipsNoise, "VIOLATION", "", 0.0),  # on the skipped steps
    (NoiseBeforeClipping, "VIOLATION", "", 0.5),  # the noise is clipped away
    (ConstantSeededGenerator, "VIOLATION", "fresh-instance", 0.0),
    (ReseededEveryStep, "VIOLATION", "", 0.0),
    (OverstatedSigma, "VIOLATION", "", 0.75),  # 0.6 z
    (RawGradientEMA, "LEAK", "state:ema", None),
    (UnnoisedMomentum, "LEAK", "state:momentum", None),
    (RealisedBatchDivision, "VIOLATION", "opposite-mean", 0.75),
    (UnpaidAdaptiveCount, "VIOLATION", "state:clip_norm", 0.9),
    (UnpaidUncentredCount, "VIOLATION", "state:clip_norm", 0.9),
    (RawUncentredCount, "LEAK", "state:clip_norm", None),
    (NoiseOnlyAfterTheFirstCall, "VIOLATION", "", 0.1),
    (NoiseOnlyAtEpochStarts, "VIOLATION", "", 0.0),
]


# ------------------------------------------------------------------------------------------ correct
class OverNoised(Base):
    """Correct and conservative: adds 1.5 z C noise, reports z."""

    def clip_and_noise(self, grads, step, epoch):
        return self.release(self.clipped_sum(grads), 1.5 * self.noise_multiplier * self.max_grad_norm)


class NoisedMomentum(Base):
    """Correct: momentum over the *noised* averages (post-processing), with a step counter in state."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.momentum, self.steps_seen = None, 0

    def clip_and_noise(self, grads, step, epoch):
        released = self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm)
        self.momentum = released if self.momentum is None else [0.9 * m + r for m, r in zip(self.momentum, released)]
        self.steps_seen += 1
        return [m.clone() for m in self.momentum]


class EntropySeededGenerator(Base):
    """Correct: its own generator, seeded from OS entropy (secret, fresh per instance)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator()
        self.generator.seed()

    def clip_and_noise(self, grads, step, epoch):
        std = self.noise_multiplier * self.max_grad_norm
        return [(s + self.noise(s.shape, std, self.generator)) / self.expected_batch_size for s in self.clipped_sum(grads)]


class PaidAdaptiveCount(UnpaidAdaptiveCount):
    """Correct adaptive clipping (Andrew et al. 2021): the gradient noise is raised to
    z_g = (z^-2 - (2 sigma_b)^-2)^-1/2 so that gradient and count together are worth z."""

    def gradient_multiplier(self):
        return (self.noise_multiplier**-2 - (2 * self.count_noise) ** -2) ** -0.5


class PaidUncentredCount(UnpaidUncentredCount):
    """Correct adaptive clipping with an uncentred count (sensitivity 1): z_g = (z^-2 - sigma_b^-2)^-1/2."""

    def gradient_multiplier(self):
        return (self.noise_multiplier**-2 - self.count_noise**-2) ** -0.5


class IntegerSchedule(Base):
    """Correct; computes its schedule as researchers do, with integer division and range(), which needs
    the integer batch size and dataset size the contract promises."""

    def __init__(self, max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs, target_epsilon, target_delta):
        super().__init__(max_grad_norm, noise_multiplier, n_params, dataset_size, batch_size, epochs, target_epsilon, target_delta)
        self.multipliers = [noise_multiplier for _ in range(epochs * (dataset_size // batch_size))]

    def clip_and_noise(self, grads, step, epoch):
        return self.release(self.clipped_sum(grads), self.multipliers[0] * self.max_grad_norm)


class EntropyEveryCall(Base):
    """Correct: every call draws its noise from a generator seeded afresh from OS entropy (``secrets``),
    and numpy's unseeded generator for the bias-like tensors (as a careful implementation might)."""

    def noise(self, shape, std, generator=None):
        if len(shape) <= 1:
            return torch.from_numpy(np.random.default_rng().normal(0.0, std, tuple(shape))).float()
        return std * torch.randn(shape, generator=torch.Generator().manual_seed(secrets.randbits(63)))

    def clip_and_noise(self, grads, step, epoch):
        return self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm)


MODULE_GENERATOR = torch.Generator().manual_seed(1234)


class ModuleLevelGenerator(Base):
    """Correct: draws its noise from a generator kept at module level (every copy shares it)."""

    def noise(self, shape, std, generator=None):
        return std * torch.randn(shape, generator=MODULE_GENERATOR)

    def clip_and_noise(self, grads, step, epoch):
        return self.release(self.clipped_sum(grads), self.noise_multiplier * self.max_grad_norm)


CORRECT = [
    OverNoised, NoisedMomentum, EntropySeededGenerator, EntropyEveryCall, PaidAdaptiveCount, PaidUncentredCount,
    IntegerSchedule, ModuleLevelGenerator,
]
