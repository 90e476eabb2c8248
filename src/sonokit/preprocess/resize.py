"""Image-level resizing shared by every reader: letterbox to a square, and channel conversion.

Images are letterboxed (aspect kept, zero padding) rather than stretched: ultrasound sectors and calipers are
geometric, and stretching a 800x540 fetal head into a square changes the very shape a model should read.
"""

from __future__ import annotations

import numpy as np

from sonokit.errors import InputError


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is `size`, then zero-pad the shorter side symmetrically to a square."""
    import cv2

    if image.ndim == 3 and image.shape[2] == 1:  # cv2.resize drops a single channel axis
        return letterbox(image[:, :, 0], size)[:, :, None]
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    out[top : top + nh, left : left + nw] = image
    return out


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) RGB -> (H, W, channels): luminance (ITU-R BT.601) for 1, replication for 3."""
    import cv2

    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels}")
    if image.ndim == 2:
        return image[:, :, None] if channels == 1 else np.repeat(image[:, :, None], 3, axis=2)
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    return image
