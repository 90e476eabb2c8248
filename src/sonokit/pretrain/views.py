"""Two random views of a batch of frames, as an ultrasound scanner could have shown them.

Why these changes (and not ImageNet's colour jitter): the same tissue is seen at another depth and zoom (crop and
resize), with another overall gain and time-gain compensation (a brightness ramp with depth), through other speckle
(multiplicative noise) and focus (blur), from the other side of the probe (mirror). Each view is drawn from an
explicit torch.Generator, so an epoch's views depend only on (seed, epoch) and a resumed run sees the same ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def crop_and_resize(
    x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.35, 1.0)
) -> torch.Tensor:
    """A random box per image (area fraction in `scale`, aspect 3/4-4/3), resized back to the input size."""
    n, _, h, w = x.shape
    area = _uniform(n, *scale, gen)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), gen)
    ratio = torch.exp(log_ratio)
    bw = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the width / height
    bh = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = bw / 2 + (1 - bw) * torch.rand(n, generator=gen)
    cy = bh / 2 + (1 - bh) * torch.rand(n, generator=gen)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = bw, bh
    theta[:, 0, 2], theta[:, 1, 2] = 2 * cx - 1, 2 * cy - 1
    flip = torch.rand(n, generator=gen) < 0.5
    theta[flip, 0, 0] *= -1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gain_and_tgc(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Overall gain, a gamma curve and a linear brightness ramp from top (near field) to bottom (depth)."""
    n, _, h, _ = x.shape
    gain = _uniform(n, 0.7, 1.3, gen).view(n, 1, 1, 1)
    gamma = torch.exp(_uniform(n, math.log(0.7), math.log(1.4), gen)).view(n, 1, 1, 1)
    slope = _uniform(n, -0.3, 0.3, gen).view(n, 1, 1, 1)
    depth = torch.linspace(-0.5, 0.5, h).view(1, 1, h, 1)
    return (x.clamp(0, 1) ** gamma * gain * (1 + slope * depth)).clamp(0, 1)


def speckle_and_blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Multiplicative speckle on half the images, a 3x3 or 5x5 Gaussian blur on half (independently)."""
    n = x.shape[0]
    noisy = (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1, 1)
    sigma = _uniform(n, 0.05, 0.25, gen).view(n, 1, 1, 1)
    noise = torch.randn(x.shape, generator=gen)
    x = torch.where(noisy, (x * (1 + sigma * noise)).clamp(0, 1), x)
    blur = torch.rand(n, generator=gen) < 0.5
    if blur.any():
        s = float(_uniform(1, 0.5, 1.5, gen))
        k = 5 if s > 1.0 else 3
        t = torch.arange(k, dtype=x.dtype) - (k - 1) / 2
        g = torch.exp(-(t**2) / (2 * s * s))
        g = g / g.sum()
        c = x.shape[1]
        sub = x[blur]
        sub = F.conv2d(
            F.pad(sub, (k // 2,) * 4, mode="reflect"), g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c
        )
        sub = F.conv2d(sub, g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)
        x = x.clone()
        x[blur] = sub
    return x


def ultrasound_view(
    x: torch.Tensor, gen: torch.Generator, crop: tuple[float, float] = (0.35, 1.0)
) -> torch.Tensor:
    """One random view of a float batch (N, C, H, W) in [0, 1]; `crop`: the area fraction a crop keeps."""
    return speckle_and_blur(gain_and_tgc(crop_and_resize(x, gen, crop), gen), gen)
