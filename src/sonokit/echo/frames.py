"""Any cine to model-size frames, one way for training, evaluation and single-study prediction.

Frames that are already size x size (EchoNet-Dynamic videos, `sonokit convert` output) are used as they are:
cropping an already cropped fan again would shift it by a few pixels and the model would see other geometry
than it was trained on. Anything else (DICOM, scanner AVI/MP4) gets the sector crop, centred zero padding and
resize of `sonokit.preprocess.preprocess_cine`, with the CropTransform that maps points back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sonokit.errors import InputError
from sonokit.preprocess import CropTransform, SectorGeometry

if TYPE_CHECKING:
    import pandas as pd

_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def identity_transform(size: int) -> CropTransform:
    return CropTransform(0, 0, 1.0, 0.0, 0.0, size, (size, size))


def prepare_frames(
    frames: np.ndarray, size: int, geometry: bool = False, sector: SectorGeometry | None = None
) -> tuple[np.ndarray, CropTransform] | tuple[np.ndarray, CropTransform, SectorGeometry | None]:
    """(F, H, W[, 3]) uint8 -> (F, size, size[, 3]) uint8 and the transform from original to model pixels.

    With `geometry`, also the detected sector (None when the frames were used as they are), e.g. to blank burned-in
    text outside the fan when the original frames are shown again. `sector`: one already detected on these frames
    (several model sizes, one detection).
    """
    if frames.ndim not in (3, 4) or len(frames) == 0:
        raise InputError(f"expected a cine (F, H, W[, 3]), got an array of shape {frames.shape}")
    if frames.shape[1:3] == (size, size):
        return (frames, identity_transform(size), None) if geometry else (frames, identity_transform(size))
    from sonokit.preprocess import preprocess_cine

    out, sector, transform = preprocess_cine(frames, size, sector)
    return (out, transform, sector) if geometry else (out, transform)


#: Sector detection looks at this many frames spread over a cine, so a 1,000-frame study needs no more memory.
DETECT_FRAMES = 256


def probe_indices(n_frames: int) -> list[int]:
    """The frames `compact` judges colour on: every (n/4)-th."""
    return list(range(0, n_frames, max(1, n_frames // 4)))


def detection_indices(n_frames: int) -> np.ndarray:
    """At most DETECT_FRAMES frames, evenly spread: what the sector detection of a cine looks at."""
    return np.unique(np.linspace(0, n_frames - 1, min(n_frames, DETECT_FRAMES)).round().astype(np.int64))


def is_bmode_rgb(probe: np.ndarray) -> bool:
    """RGB frames whose channels agree within 3 grey levels: B-mode stored as RGB (as EchoNet does)."""
    if probe.ndim != 4:
        return False
    spread = np.abs(probe[..., 0].astype(np.int16) - probe[..., 1]).max()
    return bool(max(spread, np.abs(probe[..., 1].astype(np.int16) - probe[..., 2]).max()) <= 3)


def compact(frames: np.ndarray) -> np.ndarray:
    """RGB frames whose channels agree (B-mode stored as RGB) become gray: a third the memory."""
    if is_bmode_rgb(frames[probe_indices(len(frames))]):
        return np.ascontiguousarray(frames[..., 1])
    return frames


def to_channels(frames: np.ndarray, channels: int) -> np.ndarray:
    """A stack (F, H, W) gray or (F, H, W, 3) RGB uint8 -> (F, H, W, channels) uint8 (1: BT.601 luminance)."""
    if channels == 1:
        if frames.ndim == 4:
            return (frames.astype(np.float32) @ _BT601).round().clip(0, 255).astype(np.uint8)[..., None]
        return frames[..., None]
    if channels == 3:
        return frames if frames.ndim == 4 else np.repeat(frames[..., None], 3, axis=-1)
    raise InputError(f"echo models take 1 or 3 channels, got {channels}")


@dataclass
class PreparedCine:
    """A cine at model size, with what is needed to measure on the original pixels."""

    path: Path
    frames: np.ndarray  # (F, size, size) gray or (F, size, size, 3) RGB uint8
    fps: float | None
    spacing_mm: tuple[float, float] | None  # (dy, dx) of the original pixels
    transform: CropTransform
    original_shape: tuple[int, int]
    sector: SectorGeometry | None = None  # None: the frames were already at model size

    @property
    def model_spacing_mm(self) -> tuple[float, float] | None:
        """(dy, dx) mm per model pixel: the crop scales both axes equally."""
        if self.spacing_mm is None:
            return None
        k = self.transform.pixel_size
        return (float(self.spacing_mm[0]) * k, float(self.spacing_mm[1]) * k)


@dataclass
class LoadedStudy:
    """A cine decoded once and brought to every model size it is needed at (one sector detection per cine)."""

    path: Path
    n_frames: int
    fps: float | None
    spacing: tuple[float, float] | None
    prepared: dict[int, PreparedCine]
    original: np.ndarray | None  # the decoded frames (of the chosen pane), kept only for an overlay
    pane: int | None = None  # the pane the user picked on a multi-pane screen


#: Pane detection looks at this many frames spread over a cine.
PANE_FRAMES = 16


def pane_indices(n_frames: int) -> list[int]:
    """At most PANE_FRAMES frames, evenly spread: what multi-pane detection looks at."""
    return np.unique(np.linspace(0, n_frames - 1, min(n_frames, PANE_FRAMES)).round().astype(int)).tolist()


def pane_box(
    probe: np.ndarray, path: Path, pane: int | None, regions: list | None, hint: str = "--pane"
) -> tuple[int, int, int, int] | None:
    """The box of the pane to measure, None for the whole frame; InputError naming the file on a multi-pane
    screen without a choice (it would be squeezed into one square and give another EF)."""
    from sonokit.preprocess.panes import detect_panes, pick_pane

    try:
        box = pick_pane(detect_panes(probe, regions), pane)
    except InputError as err:
        message = str(err) if hint == "--pane" else str(err).split("; pick one with")[0] + f"; {hint}"
        raise InputError(message, path) from None
    return box


def load_study(
    path: str | Path, sizes: set[int] | list[int], keep_original: bool = False, pane: int | None = None
) -> LoadedStudy:
    """Decode `path` and prepare it at each size; InputError naming the file when it is not a usable cine.

    A multi-pane screen (dual view, image + overlay) is refused unless `pane` (1-based, -1 the last) picks one.
    """
    from sonokit.io import open_cine
    from sonokit.preprocess import detect_sector
    from sonokit.preprocess.panes import crop_pane

    path = Path(path)
    with open_cine(path) as c:
        if c.n_frames < 3:
            raise InputError(f"{c.n_frames} frame(s): an LV or EF measurement needs a cine", path)
        original = c.read()
        fps, spacing, regions = c.fps, c.spacing_mm, c.meta.get("regions")
    box = pane_box(original[pane_indices(len(original))], path, pane, regions)
    if box is not None:
        original = np.ascontiguousarray(crop_pane(original, box))
    prepared: dict[int, PreparedCine] = {}
    sector = None
    try:
        for size in sorted(set(sizes)):
            if original.shape[1:3] != (size, size) and sector is None:
                sector = detect_sector(original[detection_indices(len(original))])
            out, transform, geo = prepare_frames(original, size, geometry=True, sector=sector)
            prepared[size] = PreparedCine(
                path, compact(out), fps, spacing, transform, original.shape[1:3], geo
            )
    except InputError as err:
        raise InputError(str(err).split(": ", 1)[-1] if err.path else str(err), path) from err
    return LoadedStudy(path, len(original), fps, spacing, prepared, original if keep_original else None, pane)


def read_prepared(
    path: str | Path, size: int, keep_original: bool = False, pane: int | None = None
) -> tuple[PreparedCine, np.ndarray | None]:
    """Decode a cine and bring it to model size; also return the original frames when asked (for overlays)."""
    study = load_study(path, [size], keep_original, pane)
    return study.prepared[size], study.original


@dataclass(frozen=True)
class EchoRecipe:
    """The echo preprocessing (`read_prepared`: sector crop or as-is at model size, gray when B-mode) for the cache."""

    size: int

    @property
    def key(self) -> str:
        # panes=refuse: entries are only built for single-pane cines (older entries were not checked)
        return f"echo:size={int(self.size)}:panes=refuse"

    def build(self, path: Path, allocate) -> dict:
        """The frames of `read_prepared`, written one at a time: memory of one original frame, not of the cine."""
        from sonokit.io import open_cine
        from sonokit.preprocess import crop_square, detect_sector

        size = self.size
        with open_cine(path) as c:
            n = c.n_frames
            if n < 3:
                raise InputError(f"{n} frame(s): an LV or EF measurement needs a cine", path)
            pane_box(
                np.stack(list(c.iter_frames(pane_indices(n)))), path, None, c.meta.get("regions"),
                hint="convert it with `sonokit convert --pane N` (or --pane all) and use the converted videos",
            )  # fmt: skip
            sector = None
            if (c.height, c.width) != (size, size):
                try:
                    sector = detect_sector(np.stack(list(c.iter_frames(detection_indices(n).tolist()))))
                except InputError as err:
                    raise InputError(str(err), path) from err

            def prepare(frames: np.ndarray) -> tuple[np.ndarray, CropTransform]:
                return (
                    (frames, identity_transform(size))
                    if sector is None
                    else crop_square(frames, sector, size)
                )

            probe, transform = prepare(np.stack(list(c.iter_frames(probe_indices(n)))))
            gray = is_bmode_rgb(probe)
            out = allocate((n, size, size) if gray or probe.ndim == 3 else (n, size, size, 3))
            done = 0
            for i, frame in enumerate(c):
                square = prepare(frame)[0]
                out[i] = square[..., 1] if gray else square
                done = i + 1
            if done != n:
                raise InputError(f"decoded {done} of {n} frames: truncated or corrupt", path)
            t = transform
            return {
                "fps": c.fps,
                "spacing_mm": list(c.spacing_mm) if c.spacing_mm is not None else None,
                "original_shape": [c.height, c.width],
                "transform": [t.x0, t.y0, t.scale, t.pad_x, t.pad_y, t.size, list(t.original_shape)],
            }


class PreparedStore:
    """Prepared cines for training and evaluation, from the preprocessed cache (decoded once across runs).

    The sector geometry is not kept (training does not need it); single-study prediction uses `read_prepared`.
    """

    def __init__(self, size: int) -> None:
        from sonokit.data.cache import PreprocessedCache

        self.size = int(size)
        self.cache = PreprocessedCache(EchoRecipe(self.size))

    def get(self, path: str | Path) -> PreparedCine:
        entry = self.cache.entry(path)
        meta = entry.meta
        x0, y0, scale, pad_x, pad_y, size, shape = meta["transform"]
        transform = CropTransform(
            int(x0), int(y0), float(scale), float(pad_x), float(pad_y), int(size), tuple(shape)
        )
        spacing = tuple(meta["spacing_mm"]) if meta.get("spacing_mm") is not None else None
        return PreparedCine(
            Path(path), entry.frames, meta.get("fps"), spacing, transform, tuple(meta["original_shape"])
        )


def count_cine_frames(path: str | Path) -> tuple[int, float | None]:
    """(frames, fps) from the header, without decoding the cine."""
    from sonokit.io import open_cine

    with open_cine(path) as cine:
        return int(cine.n_frames), cine.fps


def cine_index(
    files: list[Path] | tuple[Path, ...], purpose: str
) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """Unlabelled index rows (one per cine) for prediction, and (file, reason) for each file that is not a cine.

    `purpose` names what needs the cine in the error message ("EF", "the LV pipeline").
    """
    import pandas as pd

    rows, errors = [], []
    for f in files:
        try:
            n, fps = count_cine_frames(f)
            if n < 3:
                raise InputError(f"{n} frame(s): {purpose} needs a cine", f)
            rows.append(
                {"path": str(f), "name": Path(f).name, "ef": np.nan, "group": str(f), "split": "", "fps": fps,
                 "n_frames": n}
            )  # fmt: skip
        except InputError as err:
            errors.append((Path(f), str(err)))
    return pd.DataFrame(rows, columns=["path", "name", "ef", "group", "split", "fps", "n_frames"]), errors
