"""Limits on what a file may declare, checked before anything is decoded.

A 414 KB PNG can declare 20000 x 20000 pixels and a 16 MB RLE DICOM one 32768 x 32768 frame: decoding them takes
gigabytes and minutes (sector detection on top). Ultrasound frames are at most a few megapixels, so sonokit
refuses frames above MAX_FRAME_PIXELS and cines whose decoded size would pass MAX_DECODED_BYTES with one
InputError naming the file. Both can be raised with environment variables for unusual data.
"""

from __future__ import annotations

import os
from pathlib import Path

from sonokit.errors import InputError

MAX_FRAME_PIXELS = int(os.environ.get("SONOKIT_MAX_FRAME_PIXELS", 40_000_000))  # e.g. 8000 x 5000
MAX_DECODED_BYTES = int(os.environ.get("SONOKIT_MAX_DECODED_BYTES", 16 * 2**30))


def check_frame_size(path: str | Path, height: int, width: int, frames: int = 1, channels: int = 1) -> None:
    """InputError when the declared size is absurd (non-positive, or above the limits)."""
    if height <= 0 or width <= 0:
        raise InputError(f"declares a {width} x {height} frame", path)
    if height * width > MAX_FRAME_PIXELS:
        raise InputError(
            f"declares {width} x {height} pixels per frame, above the limit of {MAX_FRAME_PIXELS:,} "
            "(set SONOKIT_MAX_FRAME_PIXELS to allow more)",
            path,
        )
    total = height * width * max(frames, 1) * max(channels, 1)
    if total > MAX_DECODED_BYTES:
        raise InputError(
            f"declares {frames} frames of {width} x {height} ({total / 2**30:.1f} GiB decoded), above the limit "
            f"of {MAX_DECODED_BYTES / 2**30:.0f} GiB (set SONOKIT_MAX_DECODED_BYTES to allow more)",
            path,
        )
