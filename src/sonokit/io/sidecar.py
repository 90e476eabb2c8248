"""Physical units of a converted video: pixel spacing and frame rate beside the file, so mL survive `convert`.

An AVI or PNG carries no pixel spacing, so a DICOM converted to EchoNet's format would come back in pixels**3.
`sonokit convert` therefore writes, for each output, a sidecar `<file>.json` next to it and the same numbers as
FileList.csv columns (SpacingY_mm, SpacingX_mm: mm per pixel of the converted video, rows then columns).
`open_cine` reads them back for videos and images: the sidecar first, else the row of `../FileList.csv` when the
file sits in an EchoNet `Videos/` folder. A FileList without those columns (EchoNet-Dynamic itself) gives none.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from sonokit.errors import InputError
from sonokit.utils.logs import get_logger

log = get_logger(__name__)

SPACING_Y, SPACING_X = "SpacingY_mm", "SpacingX_mm"
SIDECAR_SUFFIX = ".json"
MAX_NAME_BYTES = 255


def sidecar_path(path: str | Path) -> Path:
    """`Videos/a.avi` -> `Videos/a.avi.json` (the full name: no clash between a.avi and a.png)."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _spacing(dy: Any, dx: Any) -> tuple[float, float] | None:
    try:
        y, x = float(dy), float(dx)
    except (TypeError, ValueError):
        return None
    return (y, x) if math.isfinite(y) and math.isfinite(x) and y > 0 and x > 0 else None


def write_sidecar(
    path: str | Path, spacing_mm: tuple[float, float] | None, fps: float | None, **extra: Any
) -> Path | None:
    """Write `<path>.json` atomically: spacing_mm [dy, dx] (null when unknown), fps and any extra fields.

    None when the name would pass the file system's 255 bytes (FileList.csv still holds a video's spacing).
    """
    from sonokit.utils.atomic import atomic_write_json
    from sonokit.utils.paths import printable

    if len(os.fsencode(sidecar_path(path).name)) > MAX_NAME_BYTES:
        log.warning("%s: name too long for a spacing sidecar; only FileList.csv records it", printable(path))
        return None

    info = {
        "spacing_mm": [round(float(v), 6) for v in spacing_mm] if spacing_mm else None,
        "fps": round(float(fps), 3) if fps else None,
        **extra,
    }
    return atomic_write_json(sidecar_path(path), info)


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The sidecar of `path` as a dict (spacing_mm as a tuple or None), None when there is none; a sidecar that
    is not valid JSON or gives a bad spacing is an InputError naming it (a wrong unit must not pass silently)."""
    side = sidecar_path(path)
    try:
        if not side.is_file():
            return None
    except OSError:  # the name plus ".json" is longer than the file system allows: there is none
        return None
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the spacing sidecar ({err})", side) from None
    if not isinstance(info, dict):
        raise InputError("spacing sidecar is not a JSON object", side)
    raw = info.get("spacing_mm")
    spacing = _spacing(*raw) if isinstance(raw, list) and len(raw) == 2 else None
    if raw is not None and spacing is None:
        raise InputError(f"spacing_mm must be [dy, dx] in mm, positive; got {raw!r}", side)
    return {**info, "spacing_mm": spacing}


@lru_cache(maxsize=8)
def _filelist_spacing(filelist: str, mtime_ns: int, size: int) -> dict[str, tuple[float, float]]:
    """{file name without extension: spacing} of a FileList with spacing columns (cached per file version)."""
    import pandas as pd

    try:
        df = pd.read_csv(filelist, dtype={"FileName": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return {}  # reading the FileList itself reports its problems; here it only may add units
    if not {"FileName", SPACING_Y, SPACING_X} <= set(df.columns):
        return {}
    out = {}
    for name, dy, dx in zip(df["FileName"], df[SPACING_Y], df[SPACING_X], strict=True):
        spacing = _spacing(dy, dx)
        if spacing is not None and isinstance(name, str):
            out[Path(name.strip()).stem if name.strip().lower().endswith(".avi") else name.strip()] = spacing
    return out


def filelist_spacing(path: str | Path) -> tuple[float, float] | None:
    """Spacing of `<root>/Videos/<name>` from `<root>/FileList.csv` (SpacingY_mm, SpacingX_mm), when listed."""
    path = Path(path)
    if path.parent.name != "Videos":
        return None
    filelist = path.parent.parent / "FileList.csv"
    try:
        st = filelist.stat()
    except OSError:
        return None
    table = _filelist_spacing(str(filelist), st.st_mtime_ns, st.st_size)
    return table.get(path.stem) if path.suffix.lower() == ".avi" else table.get(path.name)


def stored_units(path: str | Path) -> tuple[tuple[float, float] | None, float | None, str | None]:
    """(spacing_mm, fps, source) stored beside a video or image: "sidecar", "FileList.csv" or None."""
    info = read_sidecar(path)
    if info is not None:
        fps = info.get("fps")
        fps = float(fps) if isinstance(fps, int | float) and fps > 0 else None
        return info["spacing_mm"], fps, "sidecar" if info["spacing_mm"] else None
    spacing = filelist_spacing(path)
    return spacing, None, "FileList.csv" if spacing else None
