"""Shape handling shared by the preprocessing steps.

Scanner data arrives as single images or cines, grayscale or colour. Every step here accepts the four layouts
(H,W), (H,W,3), (F,H,W) and (F,H,W,3) and works on one canonical view, so no caller has to reshape.
"""

from __future__ import annotations

import cv2
import numpy as np

from sonokit.errors import InputError

# Detection looks at no more than this many frames: temporal statistics settle long before that, and it keeps
# a 300-frame cine as cheap as a 30-frame one.
MAX_STAT_FRAMES = 16


def is_colour(frames: np.ndarray) -> bool:
    """True for (H,W,3) and (F,H,W,3); a 3-frame grayscale cine of width 3 is not a thing scanners write."""
    return frames.ndim in (3, 4) and frames.shape[-1] == 3 and (frames.ndim == 4 or frames.shape[-2] > 3)


def _hw(frames: np.ndarray) -> tuple[int, int]:
    if frames.ndim == 2:
        return int(frames.shape[0]), int(frames.shape[1])
    if is_colour(frames):
        return int(frames.shape[-3]), int(frames.shape[-2])
    return int(frames.shape[-2]), int(frames.shape[-1])


def check_layout(frames: np.ndarray) -> None:
    """Raise InputError unless `frames` is one of the four supported layouts with at least one 2x2 frame."""
    if not isinstance(frames, np.ndarray):
        raise InputError(f"expected a numpy array of frames, got {type(frames).__name__}")
    if frames.ndim in (3, 4) and frames.shape[-1] == 4:
        raise InputError(f"frames {frames.shape} look like RGBA; drop the alpha channel (keep [..., :3])")
    ok = frames.ndim in (2, 3) or (frames.ndim == 4 and frames.shape[-1] == 3)
    if not ok or frames.size == 0 or min(_hw(frames)) < 2:
        raise InputError(f"expected frames shaped (H,W), (H,W,3), (F,H,W) or (F,H,W,3), got {frames.shape}")


def image_shape(frames: np.ndarray) -> tuple[int, int]:
    """(H, W) of the frames in any supported layout."""
    check_layout(frames)
    return _hw(frames)


def as_stack(frames: np.ndarray) -> np.ndarray:
    """A (F,H,W) or (F,H,W,3) view of the input (a single image becomes one frame); no copy."""
    check_layout(frames)
    single = frames.ndim == 2 or (frames.ndim == 3 and is_colour(frames))
    return frames[None] if single else frames


def gray_stack(frames: np.ndarray, max_frames: int | None = None) -> np.ndarray:
    """(F',H,W) uint8 brightness for detection: the channel maximum, so colour Doppler counts as signal.

    At most `max_frames` (default MAX_STAT_FRAMES) evenly spaced frames are kept; detection needs their
    statistics, not every frame.
    """
    max_frames = MAX_STAT_FRAMES if max_frames is None else max_frames
    stack = as_stack(frames)
    if stack.dtype != np.uint8:
        raise InputError(f"sector detection expects uint8 frames, got {stack.dtype}")
    if stack.shape[0] > max_frames:
        stack = stack[np.linspace(0, stack.shape[0] - 1, max_frames).round().astype(int)]
    if stack.ndim == 3:
        return stack
    # OpenCV's split + max per frame: numpy's reduce over a length-3 axis is ~20x slower.
    out = np.empty(stack.shape[:3], np.uint8)
    for i, frame in enumerate(stack):
        r, g, b = cv2.split(np.ascontiguousarray(frame))
        out[i] = cv2.max(cv2.max(r, g), b)
    return out
