"""Videos (.avi, .mp4, .webm, .mov) as lazy cines through OpenCV's VideoCapture.

Frame count: containers report it differently (AVI stores it, WebM/MP4 derive it from duration x fps), and a
truncated file keeps the count of the whole one. So at open time the reported last frame is decoded; if that
fails the frames are counted by reading through the file. A shortfall of more than 2 frames (or 1%) means the
file is truncated or corrupt and is reported as an InputError; a smaller one (rounding in duration-based counts)
is accepted and `n_frames` is the counted value (`meta["frame_count_source"]` says which).

Channels: OpenCV returns 3 channels for every video, also for grayscale content; they are kept (RGB order),
callers that want one channel take it themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.errors import InputError
from sonokit.io.cine import Cine
from sonokit.io.limits import check_frame_size
from sonokit.utils.logs import get_logger
from sonokit.utils.paths import opencv_path

log = get_logger(__name__)

# Forward gaps up to this many frames are skipped with grab() (demux + decode, no colour conversion); larger
# jumps and backward moves use a seek.
_MAX_GRAB_GAP = 16
_COUNT_TOLERANCE = 2


class VideoSource:
    """One VideoCapture with a read position, so sequential reads never seek."""

    def __init__(self, path: Path, n_frames: int) -> None:
        import cv2

        self.path = path
        self.n_frames = n_frames
        with opencv_path(path) as name:  # OpenCV crashes on names that are not UTF-8
            self._cap: Any = cv2.VideoCapture(name)
        self._pos = 0  # index of the frame the next read() returns
        # Frame 0 as decoded: open_video decodes it first, and reading from the start again would need a seek
        # back, which fails in a 1-frame AVI (FFmpeg); it also saves that seek on every full read.
        self._first: np.ndarray | None = None

    def _capture(self) -> Any:
        if self._cap is None:
            raise InputError("video was closed", self.path)
        return self._cap

    def _read(self, index: int) -> np.ndarray:
        import cv2

        cap = self._capture()
        if index == 0 and self._first is not None:
            return self._first.copy()
        if index != self._pos:
            if self._pos < index <= self._pos + _MAX_GRAB_GAP:
                while self._pos < index:
                    if not cap.grab():
                        raise self._fail(self._pos)
                    self._pos += 1
            else:
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                self._pos = index
        ok, frame = cap.read()
        if not ok or frame is None:
            self._pos = -1  # unknown; the next access seeks
            raise self._fail(index)
        self._pos = index + 1
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame
        if index == 0:
            self._first = frame.copy()
        return frame

    def _fail(self, index: int) -> InputError:
        return InputError(
            f"cannot decode frame {index} of {self.n_frames} (truncated or corrupt video?)", self.path
        )

    def get(self, index: int) -> np.ndarray:
        return self._read(index)

    def iterate(self, indices: list[int]) -> Iterator[np.ndarray]:
        for index in indices:
            yield self._read(index)

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None

    def __del__(self) -> None:  # a Cine dropped without close() must not keep the decoder open
        self.close()


def _count_frames(path: Path) -> int:
    import cv2

    with opencv_path(path) as name:
        cap = cv2.VideoCapture(name)
    count = 0
    try:
        while cap.grab():
            count += 1
    finally:
        cap.release()
    return count


def _fourcc(cap: Any) -> str:
    import cv2

    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = code.to_bytes(4, "little").decode("ascii", errors="replace")
    return text if text.isprintable() else ""


def open_video(path: str | Path) -> Cine:
    """Open a video file as a lazy Cine (see the module docstring for how the frame count is checked)."""
    import cv2

    path = Path(path)
    source = VideoSource(path, 1)
    try:
        cap = source._capture()
        if not cap.isOpened():
            raise InputError("not a readable video (OpenCV/FFmpeg cannot open it)", path)
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        codec = _fourcc(cap)
        check_frame_size(
            path,
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            frames=max(reported, 1),
            channels=3,
        )
        source.n_frames = max(reported, 1)
        try:
            first = source.get(0)
        except InputError:
            raise InputError("video has no decodable frames", path) from None
        count_source = "container"
        if reported > 1:
            try:
                source.get(reported - 1)
            except InputError:
                counted = _count_frames(path)
                if reported - counted > max(_COUNT_TOLERANCE, reported // 100):
                    raise InputError(
                        f"video is truncated or corrupt: header says {reported} frames, only {counted} decodable",
                        path,
                    ) from None
                log.debug("%s: container says %d frames, %d decodable", path.name, reported, counted)
                reported, count_source = counted, "counted"
        elif reported <= 0:
            reported, count_source = _count_frames(path), "counted"
        source.n_frames = reported
    except BaseException:
        source.close()
        raise
    height, width = first.shape[:2]
    meta = {
        "format": "video",
        "container": path.suffix.lower().lstrip("."),
        "codec": codec or None,
        "frame_count_source": count_source,
        "frame_time_ms": 1000.0 / fps if fps > 0 else None,
        "photometric_interpretation": "RGB",
        "transfer_syntax": None,
        "burned_in_annotation": None,
        "regions": [],
    }
    return Cine(
        path=path,
        n_frames=reported,
        height=int(height),
        width=int(width),
        channels=3 if first.ndim == 3 else 1,
        fps=fps if fps > 0 else None,
        spacing_mm=None,
        meta=meta,
        _source=source,
    )
