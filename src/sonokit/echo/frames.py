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


def compact(frames: np.ndarray) -> np.ndarray:
    """RGB frames whose channels agree (B-mode stored as RGB, as EchoNet does) become gray: a third the memory."""
    if frames.ndim == 4:
        probe = frames[:: max(1, len(frames) // 4)]
        spread = np.abs(probe[..., 0].astype(np.int16) - probe[..., 1]).max()
        spread = max(spread, np.abs(probe[..., 1].astype(np.int16) - probe[..., 2]).max())
        if spread <= 3:
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
    original: np.ndarray | None  # the decoded frames, kept only for an overlay


def load_study(path: str | Path, sizes: set[int] | list[int], keep_original: bool = False) -> LoadedStudy:
    """Decode `path` and prepare it at each size; InputError naming the file when it is not a usable cine."""
    from sonokit.io import open_cine
    from sonokit.preprocess import detect_sector

    path = Path(path)
    with open_cine(path) as c:
        if c.n_frames < 3:
            raise InputError(f"{c.n_frames} frame(s): an LV or EF measurement needs a cine", path)
        original = c.read()
        fps, spacing = c.fps, c.spacing_mm
    prepared: dict[int, PreparedCine] = {}
    sector = None
    try:
        for size in sorted(set(sizes)):
            if original.shape[1:3] != (size, size) and sector is None:
                sector = detect_sector(original)
            out, transform, geo = prepare_frames(original, size, geometry=True, sector=sector)
            prepared[size] = PreparedCine(
                path, compact(out), fps, spacing, transform, original.shape[1:3], geo
            )
    except InputError as err:
        raise InputError(str(err).split(": ", 1)[-1] if err.path else str(err), path) from err
    return LoadedStudy(path, len(original), fps, spacing, prepared, original if keep_original else None)


def read_prepared(
    path: str | Path, size: int, keep_original: bool = False
) -> tuple[PreparedCine, np.ndarray | None]:
    """Decode a cine and bring it to model size; also return the original frames when asked (for overlays)."""
    study = load_study(path, [size], keep_original)
    return study.prepared[size], study.original


@dataclass(frozen=True)
class EchoRecipe:
    """The echo preprocessing (`read_prepared`: sector crop or as-is at model size, gray when B-mode) for the cache."""

    size: int

    @property
    def key(self) -> str:
        return f"echo:size={int(self.size)}"

    def build(self, path: Path, allocate) -> dict:
        cine, _ = read_prepared(path, self.size)
        allocate(cine.frames.shape)[:] = cine.frames
        t = cine.transform
        return {
            "fps": cine.fps,
            "spacing_mm": list(cine.spacing_mm) if cine.spacing_mm is not None else None,
            "original_shape": list(cine.original_shape),
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
