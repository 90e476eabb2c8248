"""Blend a heatmap onto an ultrasound image as a uint8 RGB picture (for reports, the app and the CLI)."""

from __future__ import annotations

import cv2
import numpy as np


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {img.shape}")
    if img.dtype != np.uint8:
        scale = 255.0 if float(np.nanmax(img, initial=0.0)) <= 1.0 else 1.0  # floats in [0, 1] or [0, 255]
        img = np.clip(np.nan_to_num(img.astype(np.float32)) * scale, 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img


def overlay_heatmap(
    image: np.ndarray, heat: np.ndarray, alpha: float = 0.4, colormap: int = cv2.COLORMAP_JET
) -> np.ndarray:
    """(1 - alpha) * image + alpha * colour-mapped heat, as uint8 RGB (H, W, 3) at the image's size.

    `heat` is any (h, w) map in [0, 1]; it is resized (bilinear) when its size differs from the image's.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = _to_rgb_uint8(image)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat must be a 2-D map, got shape {heat.shape}")
    h, w = rgb.shape[:2]
    if heat.shape != (h, w):
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    heat_u8 = (np.clip(np.nan_to_num(heat), 0.0, 1.0) * 255).round().astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(heat_u8, colormap), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, colour, alpha, 0.0)
