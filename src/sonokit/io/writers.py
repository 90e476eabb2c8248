"""Write videos and images atomically with OpenCV (MJPG/FFV1 AVI, VP8/VP9 WebM, PNG/JPG).

OpenCV's headless wheel cannot write H.264; WebM (VP8) plays in browsers, MJPG AVI is what EchoNet-Dynamic uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonokit.errors import InputError
from sonokit.utils.atomic import atomic_path, atomic_write_bytes
from sonokit.utils.paths import opencv_path

_DEFAULT_CODEC = {".avi": "MJPG", ".webm": "VP80", ".mp4": "mp4v"}


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    raise InputError(f"frame must be (H, W) or (H, W, 3), got shape {frame.shape}")


def write_video(path: str | Path, frames: np.ndarray, fps: float, codec: str | None = None) -> Path:
    """Write uint8 frames (F, H, W) or (F, H, W, 3) RGB to `path`; the container follows the extension.

    Raises InputError for empty input or when OpenCV cannot open a writer for the codec.
    """
    import cv2

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or len(frames) == 0:
        raise InputError(f"cannot write a video from an array of shape {frames.shape}", path)
    if frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8, got {frames.dtype}", path)
    fourcc = codec or _DEFAULT_CODEC.get(path.suffix.lower())
    if fourcc is None:
        raise InputError(f"unsupported video extension {path.suffix!r} (use .avi, .webm or .mp4)", path)
    height, width = frames.shape[1:3]
    with atomic_path(path) as tmp:
        with opencv_path(tmp) as name:  # the output folder's name may not be UTF-8
            writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height), True)
        if not writer.isOpened():
            raise InputError(f"OpenCV cannot write {fourcc} video", path)
        try:
            for k, frame in enumerate(frames):
                if writer.write(_as_bgr(frame)) is False:  # OpenCV >= 5 reports each frame
                    raise InputError(f"OpenCV could not write frame {k} (disk full?)", path)
        finally:
            writer.release()
        _verify_video(tmp, len(frames), path)
    return path


def _verify_video(tmp: Path, expected: int, path: Path) -> None:
    """OpenCV hides write errors of the container (a full disk leaves a truncated file and no error):
    read the file back before it is renamed into place."""
    from sonokit.io.video_read import open_video

    try:
        with open_video(tmp) as cine:
            n = cine.n_frames
    except InputError as err:
        raise InputError(
            f"the written video cannot be read back, disk full? ({_reason(err)})", path
        ) from None
    if n != expected:
        raise InputError(f"the written video has {n} of {expected} frames (disk full?)", path)


def _reason(err: InputError) -> str:
    text = str(err)
    return text.split(": ", 1)[1] if err.path is not None and ": " in text else text


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) RGB image; format from the extension."""
    import cv2

    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InputError(f"cannot write an image from {image.dtype} array of shape {image.shape}", path)
    out = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(path.suffix.lower() or ".png", out)
    if not ok:
        raise InputError("OpenCV could not encode the image", path)
    # Encoded in memory, written by Python: a write error (full disk) raises, and any file name works.
    atomic_write_bytes(path, data.tobytes())
    return path
