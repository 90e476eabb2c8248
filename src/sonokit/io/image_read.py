"""Still images (.png, .jpg, .bmp, .tif) as one-frame cines.

Pixel rules: 8-bit data is kept; 16-bit grayscale is stretched from its own min to max (exported ultrasound
PNGs often use 10-12 of the 16 bits, so a fixed /257 would give a near-black image); 16-bit colour is divided
by 257 to keep the colour balance; alpha is dropped; BGR becomes RGB.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sonokit.errors import InputError
from sonokit.io.cine import Cine
from sonokit.io.limits import check_frame_size


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or RGB (H, W, 3) from what cv2.imread(IMREAD_UNCHANGED) returns (BGR/BGRA order)."""
    import cv2

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 2:  # gray + alpha
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        values = image.astype(np.float64)
        if image.ndim == 2:
            lo, hi = float(values.min()), float(values.max())
            values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
        else:
            top = 65535.0 if image.dtype == np.uint16 else max(float(values.max()), 1.0)
            values = values / top
        image = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


class ImageSource:
    """The decoded image itself (one frame is small); frames are copies so callers may edit them."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def get(self, index: int) -> np.ndarray:
        return self.image.copy()

    def iterate(self, indices: list[int]) -> Iterator[np.ndarray]:
        for index in indices:
            yield self.get(index)

    def close(self) -> None:
        pass


def _check_declared_size(path: Path) -> None:
    """Refuse an image whose header declares an absurd size before decoding it (Pillow reads only the header)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                channels = len(img.getbands())
    except Image.DecompressionBombError as err:
        raise InputError(f"declares too many pixels to decode ({err})", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # OpenCV may still read it; its own failure is reported below
    check_frame_size(path, height, width, channels=channels)


def open_image(path: str | Path) -> Cine:
    """Decode an image file now (it is one frame) and wrap it as a Cine."""
    import cv2

    path = Path(path)
    _check_declared_size(path)
    # Read the bytes in Python and decode from memory: OpenCV's own file opening crashes on names that are not
    # UTF-8.
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror or err})", path) from err
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None or raw.size == 0:
        raise InputError(
            "not a readable image (OpenCV cannot decode it: corrupt, truncated or wrong extension)", path
        )
    image = to_uint8(raw)
    meta = {
        "format": "image",
        "container": path.suffix.lower().lstrip("."),
        "source_dtype": str(raw.dtype),
        "source_channels": 1 if raw.ndim == 2 else int(raw.shape[2]),
        "photometric_interpretation": "RGB" if image.ndim == 3 else "MONOCHROME2",
        "transfer_syntax": None,
        "burned_in_annotation": None,
        "frame_time_ms": None,
        "regions": [],
    }
    return Cine(
        path=path,
        n_frames=1,
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        channels=3 if image.ndim == 3 else 1,
        fps=None,
        spacing_mm=None,
        meta=meta,
        _source=ImageSource(image),
    )
