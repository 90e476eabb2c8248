"""Frame-level access to an index that mixes images and cines.

Frame tasks (lung score, quality, fetal plane on cine loops) train on single frames but their tables list videos.
`expand_video_frames` turns each video row into one row per sampled frame; `LetterboxRecipe` is the
preprocessing that `sonokit.data.cache` runs once per file, so reading frame 40 of a cine never decodes frames 0-39
again.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonokit.data.tables import IMAGE_EXTS
from sonokit.errors import InputError
from sonokit.utils import get_logger, progress

log = get_logger(__name__)


def may_have_frames(path: str | Path) -> bool:
    """Videos and DICOM files (also extension-less ones, by their marker) can hold several frames; images not."""
    from sonokit.io.formats import file_kind

    if Path(path).suffix.lower() in IMAGE_EXTS:
        return False
    return file_kind(path) in ("dicom", "video")


@contextlib.contextmanager
def _opened(path: str | Path) -> Iterator[Any]:
    """sonokit.io.open_cine, closed afterwards; any decoder failure becomes an InputError naming the file."""
    from sonokit.io import open_cine

    cine = None
    try:
        cine = open_cine(path)
        yield cine
    except InputError:
        raise
    except Exception as err:  # decoders raise many types; the user needs the file name
        raise InputError(f"cannot decode: {err}", path) from err
    finally:
        if cine is not None:
            cine.close()


def count_frames(path: str | Path) -> int:
    """Number of frames of a video or DICOM; InputError naming the file when it cannot be opened or is empty."""
    with _opened(path) as cine:
        n = len(cine)
    if n <= 0:
        raise InputError("video has no frames", path)
    return int(n)


def read_video(path: str | Path) -> np.ndarray:
    """All frames as uint8 (F, H, W) or (F, H, W, 3) RGB."""
    with _opened(path) as cine:
        frames = np.asarray(cine.read())
    if frames.ndim < 3 or len(frames) == 0:
        raise InputError("video has no frames", path)
    return frames


def read_image(path: str | Path, frame: int = 0) -> np.ndarray:
    """One frame (a still image is frame 0) as uint8 (H, W) or (H, W, 3) RGB, without decoding the rest."""
    with _opened(path) as cine:
        if not 0 <= int(frame) < len(cine):
            raise InputError(f"frame {frame} out of range: the file has {len(cine)} frames", path)
        return np.asarray(cine.frame(int(frame)))


def read_gray_array(image: np.ndarray, path: str | Path) -> np.ndarray:
    """A decoded frame as uint8 (H, W): RGB becomes BT.601 luminance."""
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        raise InputError(f"expected 8-bit pixels, got {image.dtype}", path)
    return image


def read_gray(path: str | Path, frame: int = 0, min_side: int = 1) -> np.ndarray:
    """uint8 (H, W) of one frame (RGB becomes BT.601 luminance); InputError naming the file otherwise.

    The one grey reader of the read path (the valve cascade, the quality corruptions): originals at full
    resolution, for work that needs the scanner's pixels rather than the model-size cache.
    """
    try:
        image = np.asarray(read_image(path, int(frame)))
    except InputError:
        raise
    except Exception as err:  # decoders raise many types
        raise InputError(f"cannot read image: {err}", path) from err
    image = read_gray_array(image, path)
    if min(image.shape) < min_side:
        raise InputError(f"image too small ({image.shape[1]}x{image.shape[0]})", path)
    return image


def _build_frames(
    path: Path,
    allocate,
    frame_shape: Callable[[Any], tuple[int, ...]],
    convert: Callable[[np.ndarray], np.ndarray],
) -> dict:
    """Decode `path` one frame at a time into `allocate((F, *frame_shape(cine)))`, converting each frame."""
    with _opened(path) as cine:
        n = len(cine)
        if n <= 0:
            raise InputError("file has no frames", path)
        out = allocate((n, *frame_shape(cine)))
        done = 0
        for i, frame in enumerate(cine):
            out[i] = convert(np.asarray(frame))
            done = i + 1
        meta = {"fps": cine.fps, "height": cine.height, "width": cine.width}
    if done != n:
        raise InputError(f"decoded {done} of {n} frames: truncated or corrupt", path)
    return meta


@dataclass(frozen=True)
class LetterboxRecipe:
    """Every frame of a file (a still image is one frame) letterboxed to size x size with `channels` channels.

    The preprocessing of the 2D frame tasks (lus, fetal-plane, classify, ...), run once per file by
    `sonokit.data.cache.PreprocessedCache`. Frames are converted one at a time, so a 1,000-frame cine needs the
    memory of one decoded frame plus the (memory-mapped) output.
    """

    size: int
    channels: int = 1

    @property
    def key(self) -> str:
        return f"letterbox:size={int(self.size)}:channels={int(self.channels)}"

    def build(self, path: Path, allocate) -> dict:
        from sonokit.preprocess.resize import letterbox, to_channels

        s, c = self.size, self.channels
        return _build_frames(path, allocate, lambda _: (s, s, c), lambda f: letterbox(to_channels(f, c), s))


@dataclass(frozen=True)
class GrayRecipe:
    """Every frame as uint8 grey at its original size: for crops at the scanner's resolution (valve cascade)."""

    key: str = "gray:original"

    def build(self, path: Path, allocate) -> dict:
        return _build_frames(
            path, allocate, lambda cine: (cine.height, cine.width), lambda f: read_gray_array(f, path)
        )


class FrameCache:
    """A small LRU of decoded videos at their original size (the EchoNet reference dataset's reader).

    Model-size frames for training come from `sonokit.data.cache.PreprocessedCache` instead.
    """

    def __init__(self, max_videos: int = 8, max_bytes: int = 512 * 2**20) -> None:
        self.max_videos = max(1, int(max_videos))
        self.max_bytes = int(max_bytes)
        self._store: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def video(self, path: str | Path) -> np.ndarray:
        key = str(path)
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        frames = read_video(key)
        self._store[key] = frames
        self._bytes += frames.nbytes
        while len(self._store) > 1 and (len(self._store) > self.max_videos or self._bytes > self.max_bytes):
            _, old = self._store.popitem(last=False)
            self._bytes -= old.nbytes
        return frames

    def frame(self, path: str | Path, index: int) -> np.ndarray:
        frames = self.video(path)
        if not 0 <= int(index) < len(frames):
            raise InputError(f"frame {index} out of range: the video has {len(frames)} frames", path)
        return frames[int(index)]

    def clear(self) -> None:
        self._store.clear()
        self._bytes = 0


def load_frame(path: str | Path, frame: int = 0, cache: FrameCache | None = None) -> np.ndarray:
    """One frame of any file in an index: images directly, videos/DICOM through the cache."""
    if cache is None or not may_have_frames(path):
        return read_image(path, int(frame or 0))
    return cache.frame(path, int(frame or 0))


def sample_indices(n_frames: int, every: int = 1, max_frames: int | None = None) -> np.ndarray:
    """Frame indices 0, every, 2*every, ...; thinned evenly to at most `max_frames` (always keeps frame 0)."""
    if every < 1:
        raise InputError(f"frame step must be >= 1, got {every}")
    idx = np.arange(0, n_frames, every, dtype=np.int64)
    if max_frames is not None and len(idx) > max_frames:
        if max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {max_frames}")
        idx = idx[np.linspace(0, len(idx) - 1, max_frames).round().astype(np.int64)]
    return idx


def expand_video_frames(df: pd.DataFrame, every: int = 1, max_frames: int | None = None) -> pd.DataFrame:
    """One row per sampled frame for video rows, with an int `frame` column; images get frame 0.

    Rows that already name a frame (a `frame` column with a value, e.g. per-frame labels of a cine) are kept
    as they are. Frames of one video stay adjacent.
    """
    rows = df.reset_index(drop=True)
    if "frame" in rows.columns:
        given = pd.to_numeric(rows["frame"], errors="coerce").to_numpy(dtype=float)
    else:
        given = np.full(len(rows), np.nan)
    counts: dict[str, int] = {}
    per_row: list[np.ndarray] = []
    paths = rows["path"].astype(str).tolist()
    for i in progress(range(len(rows)), desc="counting frames", total=len(rows), unit="file"):
        if np.isfinite(given[i]):
            per_row.append(np.array([int(given[i])], dtype=np.int64))
        elif not may_have_frames(paths[i]):
            per_row.append(np.zeros(1, dtype=np.int64))
        else:
            if paths[i] not in counts:
                counts[paths[i]] = count_frames(paths[i])
            per_row.append(sample_indices(counts[paths[i]], every, max_frames))
    out = rows.loc[rows.index.repeat([len(f) for f in per_row])].reset_index(drop=True)
    out["frame"] = np.concatenate(per_row) if per_row else np.zeros(0, dtype=np.int64)
    log.debug("expanded %d rows (%d videos) into %d frame rows", len(rows), len(counts), len(out))
    return out
