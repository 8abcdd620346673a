"""Adaptive quantile clipping (Andrew et al. 2021, "Differentially private learning with adaptive clipping")."""

from __future__ import annotations

import math

import torch

from dpbench.privacy.mechanism import Mechanism

# The lowest threshold the rescaled rule moves to, as a fraction of the initial threshold: norms below it
# are those of examples the model already fits (gradients of a saturated softmax, exactly 0 in float32).
RESCALED_FLOOR = 1e-6


class AdaptiveClipping(Mechanism):
    """Flat clipping whose threshold C_t tracks the ``target_quantile`` of per-example gradient norms.

    Privacy argument: each step clips every example to C_t (kernel-enforced) and releases two sums
    of the same Poisson sample: the clipped gradients (sensitivity C_t) and the count of examples
    under the threshold, centred as b_i - 1/2 (sensitivity 1/2), with N(0, ``count_noise``^2) on the
    count. The kernel raises the gradient noise to z_g = (z^-2 - (2 sigma_b)^-2)^-1/2 so that the
    pair is one Gaussian mechanism with the calibrated multiplier z, and the ledger records z. C_t
    is updated only from the *noised* count (geometric update C <- C exp(-eta (b - gamma))), so the
    threshold is post-processing of private releases and never leaks raw norms.

    With ``rescale_step`` the released gradient is multiplied by C_0 / C_t (C_0 = ``max_grad_norm``, the
    initial threshold, a public constant; C_t the threshold this step was clipped to, itself
    post-processing of earlier noised counts), so the learning rate is in units of C_0 whatever C_t
    becomes: when every example is clipped, the step is the one it would be at C_t = C_0 (tested), and
    the threshold decides only which examples are clipped. Post-processing of the release: it costs no
    privacy. Without it (Andrew et al.'s rule), C_t also multiplies the step, so a threshold that follows
    norms spanning decades moves the effective learning rate with it. The rescaled rule keeps
    C_t >= ``RESCALED_FLOOR`` * C_0 (a data-independent bound) so that C_0 / C_t stays finite."""

    name = "adaptive"
    statistic_rule = "unclipped"  # the kernel's centred count of examples within the threshold

    def __init__(
        self,
        max_grad_norm: float,
        target_quantile: float = 0.5,
        learning_rate: float = 0.2,
        count_noise: float = 10.0,
        rescale_step: bool = False,
    ) -> None:
        super().__init__(max_grad_norm)
        if not 0.0 < target_quantile < 1.0:
            raise ValueError(f"target_quantile must be in (0, 1), got {target_quantile}")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not count_noise > 0:
            raise ValueError(
                f"count_noise (sigma_b, the std of the noise on the clipped count) must be > 0, got {count_noise}"
            )
        self.target_quantile = target_quantile
        self.learning_rate = learning_rate
        self.statistic_noise = float(count_noise)
        self.clip_norm = float(max_grad_norm)
        self.rescale_step = bool(rescale_step)
        self.released_norm = self.clip_norm  # the threshold of the step whose release comes next

    def thresholds(self, step: int, epoch: int) -> list[float]:
        return [self.clip_norm]

    def observe_statistic(self, noised_mean: float, step: int, epoch: int) -> None:
        self.released_norm = self.clip_norm
        unclipped_fraction = noised_mean + 0.5
        self.clip_norm *= math.exp(-self.learning_rate * (unclipped_fraction - self.target_quantile))
        if self.rescale_step:
            self.clip_norm = max(self.clip_norm, RESCALED_FLOOR * self.max_grad_norm)

    def postprocess(self, gradient: list[torch.Tensor], step: int, epoch: int) -> list[torch.Tensor]:
        if not self.rescale_step:
            return gradient
        scale = self.max_grad_norm / self.released_norm
        return [g * scale for g in gradient]
