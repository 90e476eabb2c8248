"""One object for every readable file: a DICOM cine, a video or a still image is a `Cine` of uint8 frames.

Frames are decoded on demand: a 1000-frame DICOM holds only its compressed bytes on disk and one decoded frame
at a time, so iterating a long study needs the memory of one frame, not of the whole cine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sonokit.errors import InputError


class FrameSource(Protocol):
    """What a format reader provides: random access, a faster sequential path, and cleanup."""

    def get(self, index: int) -> np.ndarray: ...

    def iterate(self, indices: list[int]) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class Cine:
    """A readable file as a sequence of uint8 frames, (H, W) grayscale or (H, W, 3) RGB.

    `meta` is a de-identified summary of the file (format, modality, manufacturer, photometric interpretation,
    transfer syntax, burned-in annotation flag, frame time, ultrasound regions); it never holds patient
    identifiers. `spacing_mm` is (dy, dx) in millimetres per pixel of the 2D tissue region, when known (for a
    video or image: from the sidecar or FileList.csv that `sonokit convert` wrote, see `sonokit.io.sidecar`).
    """

    path: Path
    n_frames: int
    height: int
    width: int
    channels: int
    fps: float | None
    spacing_mm: tuple[float, float] | None
    meta: dict[str, Any]
    _source: FrameSource = field(repr=False)

    def __len__(self) -> int:
        return self.n_frames

    @property
    def shape(self) -> tuple[int, ...]:
        """(F, H, W) or (F, H, W, 3): the shape `read()` returns."""
        tail = (3,) if self.channels == 3 else ()
        return (self.n_frames, self.height, self.width, *tail)

    def _index(self, i: int) -> int:
        j = int(i) + self.n_frames if int(i) < 0 else int(i)
        if not 0 <= j < self.n_frames:
            raise IndexError(f"frame {i} out of range for {self.n_frames} frames in {self.path.name}")
        return j

    def frame(self, i: int) -> np.ndarray:
        """Decode frame `i` (negative counts from the end)."""
        return self._source.get(self._index(i))

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self._source.iterate(list(range(self.n_frames)))

    def iter_frames(self, indices: Iterable[int]) -> Iterator[np.ndarray]:
        """Decode the given frames in order, using the reader's sequential path (faster than `frame` per index)."""
        yield from self._source.iterate([self._index(i) for i in indices])

    def read(self, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        """Frames start:stop:step as one (F, H, W[, 3]) uint8 array (Python slice semantics)."""
        indices = list(range(*slice(start, stop, step).indices(self.n_frames)))
        out = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        for k, frame in enumerate(self._source.iterate(indices)):
            out[k] = frame
        return out

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Cine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cine(path: str | Path) -> Cine:
    """Open a DICOM file, video (.avi/.mp4/.webm/.mov) or image (.png/.jpg/.bmp/.tif) as a lazy `Cine`.

    The header is read and the first and last frames are decoded now, so a truncated, empty or undecodable
    file fails here with an InputError naming it, not halfway through a training epoch.
    """
    from sonokit.io.formats import SUPPORTED_EXTENSIONS, file_kind

    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder, not a file (use find_inputs to list its files)", path)
    if not path.exists():
        raise InputError("no such file", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", path)
    kind = file_kind(path)
    if kind == "dicom":
        from sonokit.io.dicom_read import open_dicom

        return open_dicom(path)
    if kind == "video":
        from sonokit.io.video_read import open_video

        return _with_stored_units(open_video(path))
    if kind == "image":
        from sonokit.io.image_read import open_image

        return _with_stored_units(open_image(path))
    exts = " ".join(sorted(SUPPORTED_EXTENSIONS))
    raise InputError(
        f"unsupported file type {path.suffix or '(no extension)'!r}; sonokit reads DICOM and {exts}", path
    )


def _with_stored_units(cine: Cine) -> Cine:
    """Pixel spacing (and a missing frame rate) that `sonokit convert` stored beside a video or image."""
    from sonokit.io.sidecar import stored_units

    try:
        spacing, fps, source = stored_units(cine.path)
    except InputError:
        cine.close()
        raise
    if spacing is not None:
        cine.spacing_mm = spacing
        cine.meta["spacing_source"] = source
    if cine.fps is None and fps:
        cine.fps = fps
    return cine


def read_frames(path: str | Path) -> np.ndarray:
    """All frames of a file as (F, H, W[, 3]) uint8; use `open_cine` to bound memory on long cines."""
    with open_cine(path) as cine:
        return cine.read()
