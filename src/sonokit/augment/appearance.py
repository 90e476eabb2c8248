"""Appearance (domain) randomisation of ultrasound frames: what differs between a simulator and scanners.

Models trained on simulated echo learn the simulator's look: its grey-level curve, speckle grain, gain and depth
profile. `appearance_augment` redraws those per sample so that only the anatomy stays fixed:
    - a random monotone intensity curve (gamma and a smooth random look-up table) and an overall gain;
    - a TGC-like depth gradient (brightness changing with depth, i.e. down the image) and a mild lateral one;
    - a speckle-size change: a Gaussian blur (coarser grain) and multiplicative noise of random grain size;
    - a Gaussian blur of the whole frame and additive noise.
Intensity changes only: geometry (zoom, rotation, shift, flip) must move the labels too and is done by the caller
(`sonokit.echo.data.FrameDataset` moves the tracing with the image, so the mask follows).

All draws come from the numpy Generator passed in, so one (seed, index, epoch) always gives the same frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AppearanceConfig:
    """Ranges of the appearance augmentation; `strength` scales them (0 turns everything off)."""

    gamma_log: float = 0.5  # gamma = exp(U(-g, g))
    curve: float = 0.12  # largest displacement of the random look-up table's knots
    gain: float = 0.3  # gain = 1 + U(-gain, gain)
    tgc: float = 0.5  # depth gradient: 1 + U(-tgc, tgc) * (depth - 0.5)
    lateral: float = 0.15  # left-right gradient, same form
    speckle_p: float = 0.5
    speckle_blur: float = 1.2  # largest sigma (pixels) of the grain-coarsening blur
    speckle_noise: float = 0.35  # largest multiplicative noise level
    blur_p: float = 0.3
    blur_sigma: float = 1.0
    noise_p: float = 0.5
    noise_std: float = 0.04  # additive Gaussian noise, in units of full scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    if sigma <= 0.05:
        return x
    return cv2.GaussianBlur(x, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


def appearance_augment(
    image: np.ndarray,
    rng: np.random.Generator,
    strength: float = 1.0,
    cfg: AppearanceConfig | None = None,
) -> np.ndarray:
    """A randomly restyled copy of a (H, W) or (H, W, C) uint8 frame (channels get the same change).

    Black stays black (outside the sector there is no echo): every change is a multiplication or a curve with
    f(0) = 0, except the additive noise, which is kept inside the sector.
    """
    cfg = cfg or AppearanceConfig()
    if strength <= 0:
        return image
    s = float(strength)
    squeeze = image.ndim == 2
    x = image.astype(np.float32) / 255.0
    if squeeze:
        x = x[..., None]
    h, w, c = x.shape
    sector = x.max(axis=2) > (2.0 / 255.0)  # the scanned area (non-black pixels)

    # speckle grain: coarsen by a blur, then multiply by noise blurred to a random grain size
    if rng.random() < cfg.speckle_p:
        x = _blur(x, rng.uniform(0.0, cfg.speckle_blur * s)).reshape(h, w, c)
        grain = rng.uniform(0.5, 2.0)
        field = _blur(rng.standard_normal((h, w)).astype(np.float32), grain)
        field /= float(field.std()) + 1e-6
        x = x * np.clip(1.0 + rng.uniform(0.0, cfg.speckle_noise * s) * field, 0.0, None)[..., None]
    # depth (TGC) and lateral gain profile
    depth = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    across = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    profile = (1.0 + rng.uniform(-cfg.tgc, cfg.tgc) * s * depth) * (
        1.0 + rng.uniform(-cfg.lateral, cfg.lateral) * s * across
    )
    x = x * np.clip(profile, 0.1, None)[..., None]
    # overall gain, then the grey-level curve (gamma and a smooth random monotone look-up table)
    x = np.clip(x * (1.0 + rng.uniform(-cfg.gain, cfg.gain) * s), 0.0, 1.0)
    x = x ** float(np.exp(rng.uniform(-cfg.gamma_log, cfg.gamma_log) * s))
    knots = np.linspace(0.0, 1.0, 6)
    values = knots + np.concatenate([[0.0], rng.uniform(-cfg.curve, cfg.curve, 4) * s, [0.0]])
    values = np.maximum.accumulate(np.clip(values, 0.0, 1.0))
    x = np.interp(x, knots, values).astype(np.float32)
    # whole-frame blur and additive noise (inside the sector)
    if rng.random() < cfg.blur_p:
        x = _blur(x, rng.uniform(0.2, cfg.blur_sigma * s + 0.2)).reshape(h, w, c)
    if rng.random() < cfg.noise_p:
        noise = rng.standard_normal((h, w)).astype(np.float32) * rng.uniform(0.0, cfg.noise_std * s)
        x = x + (noise * sector)[..., None]
    out = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return out[..., 0] if squeeze else out
