"""Training-time augmentation of a whole batch at once: padded random crop and horizontal flip (CIFAR's standard)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_PADDING = 4


def pad_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None,
                  padding: int = CROP_PADDING) -> torch.Tensor:
    """Each image of the (N, C, H, W) batch shifted by up to `padding` px (zero fill) and flipped with p = 1/2.

    Vectorised (one gather for the batch) so it costs little next to a training step on CPU or GPU; the
    offsets come from `generator` on the CPU, so a seeded run draws the same crops on any device.
    """
    n, channels, height, width = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    rows = (offsets[0, :, None] + torch.arange(height)).to(x.device)  # (N, H)
    cols = (offsets[1, :, None] + torch.arange(width))
    cols = torch.where(flips[:, None], cols.flip(1), cols).to(x.device)  # flip = read the columns backwards
    padded = F.pad(x, (padding, padding, padding, padding))
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
