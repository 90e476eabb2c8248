"""Crop the imaging region to a square model input without distorting it, and map points back.

Models want a fixed square input; stretching a fan to fit would change every angle and every measured length, so
the short side is padded (centred, zeros) instead. The CropTransform records the exact mapping so that tracings,
keypoints and boxes predicted on the square can be drawn and measured on the original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sonokit.errors import InputError
from sonokit.preprocess.frames import as_stack, image_shape, is_colour
from sonokit.preprocess.sector import SectorGeometry, detect_sector

# The dtypes OpenCV's resize accepts (bool is cropped as uint8).
_RESIZABLE = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_))


@dataclass(frozen=True)
class CropTransform:
    """Maps (x, y) points between original pixels and the size x size output.

    Pixel centres sit at integer coordinates in both images (OpenCV's resize convention), so pixel (i, j) of the
    output is the area-average around `to_original([[j, i]])`. The crop starts at (x0, y0) of the original; the
    cropped box is placed pad_x, pad_y pixels into a zero square of side size / scale, which is resized to size.
    """

    x0: int
    y0: int
    scale: float
    pad_x: float
    pad_y: float
    size: int
    original_shape: tuple[int, int]

    def _offset(self) -> np.ndarray:
        return np.array([self.x0 - self.pad_x, self.y0 - self.pad_y], dtype=np.float64)

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) x, y in original pixels -> output pixels."""
        return (np.asarray(xy, dtype=np.float64) - self._offset() + 0.5) * self.scale - 0.5

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) x, y in output pixels -> original pixels (the inverse of to_crop)."""
        return (np.asarray(xy, dtype=np.float64) + 0.5) / self.scale - 0.5 + self._offset()

    @property
    def pixel_size(self) -> float:
        """Original pixels per output pixel: multiply an original pixel spacing (mm) by it for the output's."""
        return 1.0 / self.scale


def crop_square(
    frames: np.ndarray,
    geometry: SectorGeometry,
    size: int,
    interpolation: int = cv2.INTER_AREA,
) -> tuple[np.ndarray, CropTransform]:
    """Mask, crop to the geometry's bbox, pad the short side (centred zeros) and resize to size x size.

    Works on (H,W), (H,W,3), (F,H,W) and (F,H,W,3); the output keeps the layout and dtype. INTER_AREA suits
    downsizing images; pass cv2.INTER_NEAREST for label masks.
    """
    if size < 1:
        raise InputError(f"crop size must be a positive number of pixels, got {size}")
    shape = image_shape(frames)
    if shape != geometry.shape:
        raise InputError(f"frames are {shape} but the sector geometry is for {geometry.shape}")
    x0, y0, x1, y1 = geometry.bbox
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        raise InputError(f"the sector geometry has an empty bounding box {geometry.bbox}")
    side = max(w, h)
    pad_x, pad_y = (side - w) // 2, (side - h) // 2
    transform = CropTransform(x0, y0, size / side, float(pad_x), float(pad_y), size, shape)

    stack = as_stack(frames)
    dtype = stack.dtype
    if dtype not in _RESIZABLE:
        raise InputError(f"crop_square takes {', '.join(t.name for t in _RESIZABLE)} frames, got {dtype}")
    if dtype == np.bool_:  # OpenCV has no bool images
        stack = stack.view(np.uint8)
    keep = np.ascontiguousarray(geometry.mask[y0:y1, x0:x1]).view(np.uint8)
    canvas = np.zeros((side, side, *stack.shape[3:]), dtype=stack.dtype)
    out = np.empty((stack.shape[0], size, size, *stack.shape[3:]), dtype=stack.dtype)
    # Frame by frame: OpenCV's masked copy and resize are SIMD loops, and no full-cine temporary is built.
    for i, frame in enumerate(stack):
        box = np.ascontiguousarray(frame[y0:y1, x0:x1])
        canvas[pad_y : pad_y + h, pad_x : pad_x + w] = cv2.bitwise_and(box, box, mask=keep).reshape(box.shape)
        if side == size:
            out[i] = canvas
        else:
            out[i] = cv2.resize(canvas, (size, size), interpolation=interpolation).reshape(out.shape[1:])
    out = out.view(dtype) if dtype == np.bool_ else out
    single = frames.ndim == 2 or (frames.ndim == 3 and is_colour(frames))
    return (out[0] if single else out), transform


def preprocess_cine(
    frames: np.ndarray, size: int = 112, geometry: SectorGeometry | None = None
) -> tuple[np.ndarray, SectorGeometry, CropTransform]:
    """Detect the sector (unless given), blank everything outside it, crop and resize to a size x size square.

    The one call `sonokit convert` and single-study prediction make on each cine.
    """
    if geometry is None:
        geometry = detect_sector(frames)
    out, transform = crop_square(frames, geometry, size)
    return out, geometry, transform
