"""A flat, de-identified description of a readable file (what `sonokit info` prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def describe(path: str | Path) -> dict[str, Any]:
    """Open the file (which validates it) and describe it; `Cine.meta` is already free of patient identifiers."""
    from sonokit.io.cine import open_cine

    with open_cine(path) as cine:
        info: dict[str, Any] = {
            "path": str(cine.path),
            "frames": cine.n_frames,
            "height": cine.height,
            "width": cine.width,
            "channels": cine.channels,
            "fps": cine.fps,
            "spacing_mm": list(cine.spacing_mm) if cine.spacing_mm else None,
        }
        info.update(cine.meta)
    return info
