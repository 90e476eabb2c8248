"""Pictures for the page and the report: PNG bytes of images, and the LV area curve with its ED/ES marks."""

from __future__ import annotations

import io
import math

import numpy as np

from sonokit.app.echo import EchoResult
from sonokit.echo.overlay import ED_COLOUR, ES_COLOUR


def badge_colour(label: str, thresholds: str) -> str:
    """Badge colour of a heart-function class: the preset's best class green, its worst red, others orange."""
    from sonokit.clinical import get_thresholds

    labels = list(get_thresholds(thresholds).labels)
    if label not in labels:
        return "gray"
    i = labels.index(label)
    return "green" if i == 0 else "red" if i == len(labels) - 1 else "orange"


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W) gray or (H, W, 3) RGB -> PNG bytes."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {img.shape} as PNG")
    return buf.tobytes()


def _rgb01(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(c / 255.0 for c in colour)  # type: ignore[return-value]


def curve_png(echo: EchoResult, width_in: float = 7.0, height_in: float = 2.4) -> bytes | None:
    """The LV area over time with ED (red) and ES (blue) lines and each beat's EF written above it."""
    if echo.curve is None or len(echo.curve) == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = np.asarray(echo.curve, dtype=float)
    fps = echo.fps if echo.fps and echo.fps > 0 else None
    t = np.arange(len(curve)) / fps if fps else np.arange(len(curve))
    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=110)
    try:
        ax.plot(t, curve, color="#333", lw=1.4)
        for f in echo.ed:
            if 0 <= f < len(curve):
                ax.axvline(t[f], color=_rgb01(ED_COLOUR), lw=1.1)
        for f in echo.es:
            if 0 <= f < len(curve):
                ax.axvline(t[f], color=_rgb01(ES_COLOUR), lw=1.1, ls="--")
        top = float(np.nanmax(curve)) if np.isfinite(curve).any() else 1.0
        for b in echo.beats:
            ef = b.get("ef", math.nan)
            if math.isfinite(ef) and 0 <= b["ed"] < len(curve):
                ax.annotate(f"EF {ef:.0f}%", (t[b["ed"]], top), fontsize=7, ha="left", va="bottom",
                            xytext=(2, 1), textcoords="offset points")  # fmt: skip
        ax.set_xlabel("time (s)" if fps else "frame")
        ax.set_ylabel(echo.curve_label or "LV area", fontsize=8)
        ax.set_title("LV area: ED red (solid), ES blue (dashed)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.margins(x=0.01, y=0.15)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
