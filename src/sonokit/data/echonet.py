"""EchoNet-Dynamic folders: FileList.csv, VolumeTracings.csv, Videos/*.avi (Ouyang et al., Nature 2020).

This module is the index (pandas/numpy only, fast to import for `sonokit ef simpson`); the ef and LV tasks build
their datasets from it (sonokit.echo.data).

Facts the readers rely on: FileList's FileName may lack `.avi` while VolumeTracings' has it; Split is TRAIN/VAL/TEST;
each traced frame has 21 rows, the first the LV long axis, the others chords perpendicular to it; the traced frame
with the larger Simpson volume is end-diastole (ED), the smaller end-systole (ES). File order is not ED-then-ES.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.data.tables import normalise_split
from sonokit.data.validate import listing, require_columns, require_files, require_finite
from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

FILELIST = "FileList.csv"
TRACINGS = "VolumeTracings.csv"
VIDEOS = "Videos"
LINES_PER_FRAME = 21
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")


def with_avi(name: str) -> str:
    """FileList names often lack the extension that the video files and VolumeTracings have."""
    name = str(name).strip()
    return name if os.path.splitext(name)[1] else f"{name}.avi"


def _with_avi_column(names: pd.Series) -> pd.Series:
    """with_avi over a column, computed once per distinct name (VolumeTracings repeats each 42 times)."""
    names = names.astype(str)
    unique = names.unique()
    return names.map(dict(zip(unique, (with_avi(n) for n in unique), strict=True)))


@dataclass
class EchoNetIndex:
    """FileList rows plus tracings keyed by video file name and frame (row order of the CSV kept)."""

    root: Path
    filelist: pd.DataFrame
    tracings: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)

    @property
    def tracings_csv(self) -> Path:
        return self.root / TRACINGS

    def video_path(self, filename: str) -> Path:
        return self.root / VIDEOS / with_avi(filename)

    def split(self, split: str | None) -> pd.DataFrame:
        """FileList rows of one split ("train"/"val"/"test"); None or "all" for every row."""
        if split is None or str(split).lower() == "all":
            return self.filelist
        split = str(split).lower()
        if split not in ("train", "val", "test"):
            raise InputError(f"unknown split {split!r} (use train, val, test or all)", self.root / FILELIST)
        return self.filelist[self.filelist["Split"] == split]

    def tracing_problem(self, filename: str) -> str | None:
        """Why a video's tracings cannot give ED/ES volumes, or None when they are 2 frames x 21 lines."""
        traced = self.tracings.get(with_avi(filename))
        if not traced:
            return "no tracings"
        if len(traced) != 2:
            return f"{len(traced)} traced frame{'s' if len(traced) != 1 else ''} (need 2)"
        for frame, lines in traced.items():
            if len(lines) != LINES_PER_FRAME:
                return f"frame {frame} has {len(lines)} tracing lines (need {LINES_PER_FRAME})"
        return None

    def volumes(self, filename: str, spacing_mm: tuple[float, float] | None = None) -> dict[int, float]:
        """Simpson's method-of-discs volume of each traced frame: pixel^3, or mL with the video's (dy, dx) mm."""
        from sonokit.clinical import volume_from_tracing

        traced = self.tracings.get(with_avi(filename), {})
        return {frame: float(volume_from_tracing(lines, spacing_mm)) for frame, lines in traced.items()}

    def ed_es_volumes(
        self, filename: str, spacing_mm: tuple[float, float] | None = None
    ) -> tuple[int, int, float, float]:
        """(ED frame, ES frame, EDV, ESV in pixel^3, or mL with spacing_mm): the larger volume is ED."""
        problem = self.tracing_problem(filename)
        if problem is not None:
            raise InputError(f"{with_avi(filename)}: {problem}", self.tracings_csv)
        (f1, v1), (f2, v2) = self.volumes(filename, spacing_mm).items()
        return (f1, f2, v1, v2) if v1 >= v2 else (f2, f1, v2, v1)

    def ed_es(self, filename: str) -> tuple[int, int]:
        """(ED frame, ES frame) by Simpson volume (larger = ED); file order says nothing about which is which."""
        return self.ed_es_volumes(filename)[:2]


def _read_filelist(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(
            f"{FILELIST} not found (expected an EchoNet-Dynamic folder: {FILELIST}, {TRACINGS}, {VIDEOS}/)",
            path.parent,
        )
    try:
        df = pd.read_csv(path, dtype={"FileName": str, "Split": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"cannot parse CSV: {str(err).splitlines()[0]}", path) from err
    df.columns = [str(c).strip() for c in df.columns]
    require_columns(df.columns, ["FileName"], path)
    if df.empty:
        raise InputError("table has no rows", path)
    df["FileName"] = _with_avi_column(df["FileName"])
    dup = df["FileName"][df["FileName"].duplicated()].unique().tolist()
    if dup:
        raise InputError(f"{len(dup)} FileName(s) listed twice: {listing(dup)}", path)
    df["Split"] = normalise_split(df["Split"], path, "Split") if "Split" in df.columns else ""
    return df.reset_index(drop=True)


def _read_tracings(path: Path) -> dict[str, dict[int, np.ndarray]]:
    if not path.is_file():
        return {}
    try:
        df = pd.read_csv(path, dtype={"FileName": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"cannot parse CSV: {str(err).splitlines()[0]}", path) from err
    df.columns = [str(c).strip() for c in df.columns]
    require_columns(df.columns, TRACING_COLUMNS, path)
    require_finite(df, TRACING_COLUMNS[1:], path)
    names = _with_avi_column(df["FileName"]).to_numpy()
    frames = pd.to_numeric(df["Frame"]).to_numpy().astype(np.int64)
    coords = df[["X1", "Y1", "X2", "Y2"]].to_numpy(dtype=np.float64)
    # Rows of one (file, frame) need not be adjacent; keep first-appearance order of files, frames and lines.
    name_codes, name_uniques = pd.factorize(names, sort=False)
    frame_codes, frame_uniques = pd.factorize(frames, sort=False)
    codes, key_uniques = pd.factorize(name_codes * (len(frame_uniques) + 1) + frame_codes, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    out: dict[str, dict[int, np.ndarray]] = {}
    for key, rows in zip(key_uniques, np.split(order, bounds), strict=True):
        name, frame = (
            name_uniques[key // (len(frame_uniques) + 1)],
            frame_uniques[key % (len(frame_uniques) + 1)],
        )
        out.setdefault(str(name), {})[int(frame)] = coords[rows]
    return out


def read_echonet(root: str | Path, check_videos: bool = False) -> EchoNetIndex:
    """Read an EchoNet-Dynamic folder. VolumeTracings.csv is optional (tracings empty without it).

    `check_videos` raises when videos listed in FileList are missing from Videos/ (named, up to a limit).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("EchoNet-Dynamic folder not found" if not root.exists() else "not a folder", root)
    filelist = _read_filelist(root / FILELIST)
    tracings = _read_tracings(root / TRACINGS)
    index = EchoNetIndex(root=root, filelist=filelist, tracings=tracings)
    if check_videos:
        require_files(
            [str(index.video_path(n)) for n in filelist["FileName"]], root / FILELIST, what="videos"
        )
    log.debug("EchoNet index: %d videos, %d with tracings", len(filelist), len(tracings))
    return index
