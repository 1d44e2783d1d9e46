"""Training-time augmentation of a whole batch at once.

`pad_crop_flip`: padded random crop (4 px, zero fill) and horizontal flip, CIFAR's standard. `random_shift`:
a shift of up to 2 px and no flip, for 1-channel digit-like images (MNIST, Fashion-MNIST): a mirrored digit
is not the same digit. Its fill repeats the edge pixels: on normalised MNIST a zero is not the black
background (that is -mean/std), while the edge of an MNIST image is always background, so the shifted-in
border is the background a shift in pixel space (zero padding of raw pixels) would bring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_PADDING = 4
SHIFT_PADDING = 2


def pad_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None,
                  padding: int = CROP_PADDING, flip: bool = True, fill: str = "constant") -> torch.Tensor:
    """Each image of the (N, C, H, W) batch shifted by up to `padding` px and flipped with p = 1/2 if `flip`.

    The shifted-in border is zeros (`fill="constant"`) or the image's edge pixels repeated (`"replicate"`).

    Vectorised (one gather for the batch) so it costs little next to a training step on CPU or GPU; the
    offsets come from `generator` on the CPU, so a seeded run draws the same crops on any device.
    """
    n, channels, height, width = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    rows = (offsets[0, :, None] + torch.arange(height)).to(x.device)  # (N, H)
    cols = (offsets[1, :, None] + torch.arange(width))
    if flip:
        flips = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(flips[:, None], cols.flip(1), cols)  # flip = read the columns backwards
    cols = cols.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding), mode=fill)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_shift(x: torch.Tensor, generator: torch.Generator | None = None,
                 padding: int = SHIFT_PADDING) -> torch.Tensor:
    """Each image shifted by up to `padding` px on each axis (edge pixels repeated into the gap), never flipped."""
    return pad_crop_flip(x, generator, padding=padding, flip=False, fill="replicate")
