"""The pictures the page shows: masked outside the ultrasound region, or not shown at all.

Burned-in names and dates live outside the imaging region, so every image is masked first; when no region is
found the app shows nothing (a montage shows black instead, sonokit.data.shown).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sonokit.errors import SonokitError

THUMB = 160


def detect(frames: np.ndarray) -> Any:
    """The imaging region (sonokit.preprocess.SectorGeometry) of one image or a stack of frames, or None."""
    from sonokit.preprocess import detect_sector

    try:
        return detect_sector(frames)
    except SonokitError:
        return None


def mask(image: np.ndarray | None, sector: Any) -> np.ndarray | None:
    """The image with everything outside the imaging region blanked; None when no region is known."""
    from sonokit.preprocess import apply_mask

    if image is None or sector is None:
        return None
    if tuple(image.shape[:2]) != tuple(sector.shape):
        return None
    return apply_mask(image, sector)


def thumb(image: np.ndarray, side: int = THUMB) -> np.ndarray:
    """The image shrunk to at most `side` pixels on its long side (never enlarged)."""
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )


def gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def unletterbox(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo sonokit.data.datasets.letterbox on a (size, size) map: the map over the original (H, W) image."""
    import cv2

    size = heat.shape[0]
    h, w = shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (size - nh) // 2, (size - nw) // 2
    inner = np.ascontiguousarray(heat[top : top + nh, left : left + nw], dtype=np.float32)
    return cv2.resize(inner, (w, h), interpolation=cv2.INTER_LINEAR)


def read_masked(path: str, frame: str | int) -> np.ndarray | None:
    """A thumbnail of one frame of a file on disk (a similar training case), masked with the file's region
    (sonokit.data.shown.region_of, cached per file); None when it cannot be read or has no region."""
    from sonokit.data.frames import read_image
    from sonokit.data.shown import masked_image, region_of

    try:
        image = np.asarray(read_image(path, int(frame) if frame not in ("", None) else 0))
        region = region_of(path)
    except (SonokitError, OSError, ValueError):
        return None
    if region is None or region.shape != image.shape[:2]:
        return None
    return thumb(masked_image(image, region))
