"""Frames as they may appear in a saved picture: everything outside the imaging region set to 0.

Montages, detection grids and reports are shared more widely than the data; the burned-in text around the image
(names, dates, the institution) must not travel with them. A cine's region is found on up to `DETECT_FRAMES`
frames spread over it (speckle moves, text does not); a still on itself. When no region is found the frame is
shown black: a picture without the image beats one with a name on it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)
DETECT_FRAMES = 16


@lru_cache(maxsize=64)
def _region(path: str, mtime_ns: int) -> np.ndarray | None:
    """The (H, W) imaging-region mask of a file, or None when none is found (cached per file version)."""
    from sonokit.io import open_cine
    from sonokit.preprocess.sector import detect_sector

    with open_cine(path) as cine:
        picks = np.unique(np.linspace(0, len(cine) - 1, min(len(cine), DETECT_FRAMES)).round().astype(int))
        frames = np.stack([np.asarray(cine.frame(int(i))) for i in picks])
    try:
        return detect_sector(frames).mask
    except InputError:
        log.info("no imaging region found in one file: its frame is shown black")
        return None


def region_of(path: str | Path) -> np.ndarray | None:
    """The (H, W) imaging-region mask of a file's frames, or None when none is found."""
    return _region(str(path), Path(path).stat().st_mtime_ns)


def masked_image(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """A copy of (H, W) or (H, W, 3) `image` with the pixels outside `mask` set to 0 (all of them without one)."""
    image = np.asarray(image)
    if mask is None or mask.shape != image.shape[:2]:
        return np.zeros_like(image)
    out = image.copy()
    out[~mask] = 0
    return out


def read_shown(path: str | Path, frame: int = 0) -> np.ndarray:
    """Frame `frame` of `path` (uint8, (H, W) or (H, W, 3) RGB) with everything outside the imaging region set
    to 0: what a saved picture may show."""
    from sonokit.data.frames import read_image

    image = np.asarray(read_image(path, int(frame)))
    return masked_image(image, region_of(path))
