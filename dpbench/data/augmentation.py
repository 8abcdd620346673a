"""Random image augmentations drawn independently of the data: random crops and horizontal flips.

The randomness comes from torch's global generator (checkpointed with every run, so a resumed run
draws the same views) and never depends on any example, so an augmented view is a function of its
own example and fresh noise only.
"""

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Each ``[C, H, W]`` image of ``[N, C, H, W]`` zero-padded by ``padding`` pixels, cropped back to
    ``H x W`` at a uniformly random offset, and mirrored left-right with probability 1/2 if ``flip``."""
    if images.dim() != 4:
        raise ValueError(f"augmentation expects images shaped [N, C, H, W], got {tuple(images.shape)}")
    n, _, height, width = images.shape
    device = images.device
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        top = torch.randint(0, 2 * padding + 1, (n,), device=device)
        left = torch.randint(0, 2 * padding + 1, (n,), device=device)
        rows = (top[:, None] + torch.arange(height, device=device))[:, :, None]  # [N, H, 1]
        cols = (left[:, None] + torch.arange(width, device=device))[:, None, :]  # [N, 1, W]
        images = padded[torch.arange(n, device=device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mirrored = torch.rand(n, device=device) < 0.5
        images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
    return images.contiguous()
