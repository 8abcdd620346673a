"""Flat clipping with constant Gaussian noise: DP-SGD as in Abadi et al. 2016."""

from __future__ import annotations

from dpbench.privacy.mechanism import Mechanism


class FixedClipping(Mechanism):
    """Abadi et al. DP-SGD.

    Privacy argument: every example's whole gradient is clipped to L2 norm C = ``max_grad_norm``
    (one group, factor min(1, C/||g||), enforced by the kernel), so adding or removing one example
    moves the summed gradient by at most C. The kernel adds N(0, (zC)^2) to every coordinate with the
    calibrated, constant z and records (q, z) for each step: a Poisson-subsampled Gaussian mechanism
    per step, composed by the RDP accountant. Dividing by the expected batch size and the optimizer
    are post-processing."""

    name = "fixed"
