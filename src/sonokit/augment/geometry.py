"""Seeded augmentation of numpy frames with their keypoints and masks, and of clips (no torchvision).

Why a second path beside transforms.py (torchvision v2): the echo datasets draw from a numpy Generator seeded per
(seed, item, epoch) (`item_rng`) and read uint8 frames from the prepared-frame cache; the LV tracing (keypoints)
moves through the same 2x3 affine as its frame (`warp_points`), so the mask rasterised from it always sits on the
moved image. A clip is shifted as a whole, every frame by the same pixels (`random_shift`). The draws, their order
and the pixels are those the echo datasets made before they called augment/, so runs train on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def random_affine(
    rng: np.random.Generator,
    size: int,
    strength: float = 1.0,
    max_deg: float = 10.0,
    max_scale: float = 0.1,
    max_shift: float = 0.06,
) -> np.ndarray:
    """A random 2x3 affine of a size x size image: rotation within +-max_deg, isotropic scale 1 +- max_scale and
    a shift within +-max_shift of the side, about the image centre, all scaled by `strength` (never a mirror)."""
    import cv2

    angle = rng.uniform(-max_deg, max_deg) * strength
    scale = 1.0 + rng.uniform(-max_scale, max_scale) * strength
    m = cv2.getRotationMatrix2D(((size - 1) / 2.0, (size - 1) / 2.0), angle, scale)
    m[:, 2] += rng.uniform(-max_shift, max_shift, size=2) * size * strength
    return m


def hflip_matrix(size: int) -> np.ndarray:
    """The 2x3 affine of a left-right mirror of a size x size image (pixel centres)."""
    return np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine of `outer` after `inner`."""
    return np.concatenate(
        [outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], 1
    )


def warp(image: np.ndarray, m: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """`image` (S, S) or (S, S, C) moved by the 2x3 affine `m` into a size x size frame, zero outside; bilinear
    for images, nearest-neighbour for masks and label maps (`nearest=True`), so labels stay labels."""
    import cv2

    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.warpAffine(image, m, (size, size), flags=flags)
    return out.reshape(size, size, *image.shape[2:])  # cv2 drops a channel axis of length 1


def warp_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Keypoints (..., 2) as x, y in pixels (pixel centres at integers, as cv2 warps) moved by the affine `m`."""
    return points @ m[:, :2].T + m[:, 2]


def gain_gamma(
    image: np.ndarray,
    rng: np.random.Generator,
    strength: float = 1.0,
    max_gain: float = 0.2,
    max_log_gamma: float = 0.2,
) -> np.ndarray:
    """A uint8 frame with gain 1 +- max_gain and gamma exp(+-max_log_gamma), both scaled by `strength` (images only:
    keypoints and masks are unchanged)."""
    gain = 1.0 + rng.uniform(-max_gain, max_gain) * strength
    gamma = float(np.exp(rng.uniform(-max_log_gamma, max_log_gamma) * strength))
    return np.clip(255.0 * (image / 255.0) ** gamma * gain, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class FrameAugment:
    """The LV frames' training augmentation: a mild rotation / scale / shift (`random_affine`), with `hflip` a
    mirror half the time, then gain and gamma, with `appearance` the domain randomisation of
    sonokit.augment.appearance. All scaled by `strength`; all drawn from the one Generator passed in.

    `aug(image, rng) -> (image, m)`: move keypoints with `warp_points(points, m)` and masks with
    `warp(mask, m, size, nearest=True)`, so labels move with the frame.
    """

    size: int
    strength: float = 1.0
    hflip: bool = False
    appearance: bool = False

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        m = random_affine(rng, self.size, self.strength)
        # drawn after the affine, so runs without the mirror draw the same affine, gain and gamma as before it
        if self.hflip and rng.random() < 0.5:
            m = compose(hflip_matrix(self.size), m)
        image = gain_gamma(warp(image, m, self.size), rng, self.strength)
        if self.appearance:
            from sonokit.augment.appearance import appearance_augment

            image = appearance_augment(image, rng, self.strength)
        return image, m


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate the last two axes by (dy, dx) pixels with zero fill (EchoNet's pad-and-crop augmentation); an
    image, a mask or a whole clip (C, T, H, W) moves as one."""
    if dy == 0 and dx == 0:
        return x
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def random_shift(x: torch.Tensor, rng: np.random.Generator, pad: int) -> torch.Tensor:
    """`shift` by (dy, dx) drawn uniformly from [-pad, pad] pixels each (pad 0: unchanged, nothing drawn)."""
    if pad <= 0:
        return x
    dy, dx = rng.integers(-pad, pad + 1, size=2)
    return shift(x, int(dy), int(dx))
