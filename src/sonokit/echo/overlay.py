"""A review video of one study: the cine with the predicted LV contour, and the LV area curve with ED/ES marks
and a moving cursor underneath. Written as WebM (VP8), which browsers play.

Drawing uses OpenCV on RGB arrays (colours below are RGB); matplotlib per frame would be ~50x slower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PANEL_H = 96
MIN_WIDTH = 320
CONTOUR = (40, 230, 40)
ED_COLOUR = (240, 60, 60)
ES_COLOUR = (60, 160, 255)


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame[..., None], 3, axis=-1) if frame.ndim == 2 else frame


def _even(n: int) -> int:
    return n + (n % 2)


def _curve_panel(curve: np.ndarray, ed: Sequence[int], es: Sequence[int], width: int, label: str) -> tuple:
    """The static part of the curve strip and the x position of every frame."""
    import cv2

    panel = np.zeros((PANEL_H, width, 3), np.uint8)
    n = len(curve)
    xs = np.linspace(8, width - 8, n) if n > 1 else np.array([width / 2])
    lo, hi = float(np.nanmin(curve)), float(np.nanmax(curve))
    span = hi - lo if hi > lo else 1.0
    ys = PANEL_H - 14 - (curve - lo) / span * (PANEL_H - 30)
    for f, colour in [(f, ED_COLOUR) for f in ed] + [(f, ES_COLOUR) for f in es]:
        if 0 <= f < n:
            cv2.line(panel, (int(xs[f]), 12), (int(xs[f]), PANEL_H - 4), colour, 1)
    pts = np.stack([xs, ys], axis=1).round().astype(np.int32)
    cv2.polylines(panel, [pts], False, (230, 230, 230), 1, cv2.LINE_AA)
    cv2.putText(panel, label, (6, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (200, 200, 200), 1, cv2.LINE_AA)
    return panel, xs, ys


def render_overlay(
    frames: np.ndarray,
    contours: Sequence[np.ndarray | None] | None,
    curve: np.ndarray | None,
    ed: Sequence[int] = (),
    es: Sequence[int] = (),
    text: str = "",
    curve_label: str = "LV area",
) -> np.ndarray:
    """(F, H', W', 3) uint8 review frames; contours are (k, 2) x, y in the pixels of `frames` (None: none)."""
    import cv2

    n, h, w = frames.shape[:3]
    k = max(1, math.ceil(MIN_WIDTH / w))
    width, height = _even(w * k), _even(h * k)
    panel, xs, ys = (None, None, None)
    if curve is not None and len(curve) == n:
        panel, xs, ys = _curve_panel(np.asarray(curve, float), ed, es, width, curve_label)
    out = np.zeros((n, height + (PANEL_H if panel is not None else 0), width, 3), np.uint8)
    ed_set, es_set = set(int(f) for f in ed), set(int(f) for f in es)
    for i in range(n):
        img = _rgb(frames[i])
        img = (
            cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
            if (k > 1 or width != w or height != h)
            else img.copy()
        )
        if contours is not None and contours[i] is not None and len(contours[i]) >= 3:
            pts = (
                ((np.asarray(contours[i], float) + 0.5) * [width / w, height / h] - 0.5)
                .round()
                .astype(np.int32)
            )
            cv2.polylines(img, [pts], True, CONTOUR, max(1, k), cv2.LINE_AA)
        tag = "ED" if i in ed_set else "ES" if i in es_set else ""
        if tag:
            cv2.putText(
                img,
                tag,
                (width - 34, 20),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6,
                ED_COLOUR if tag == "ED" else ES_COLOUR,
                2,
                cv2.LINE_AA,
            )
        if text:
            cv2.putText(
                img, text, (6, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
            )
        cv2.putText(img, f"{i}", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        out[i, :height] = img
        if panel is not None:
            strip = panel.copy()
            x = int(xs[i])
            cv2.line(strip, (x, 12), (x, PANEL_H - 4), (255, 255, 0), 1)
            cv2.circle(strip, (x, int(ys[i])), 3, (255, 255, 0), -1, cv2.LINE_AA)
            out[i, height:] = strip
    return out


def write_overlay(path: str | Path, frames: np.ndarray, fps: float | None, **kw) -> Path:
    """Render and write the review video (WebM VP8 unless the extension says otherwise)."""
    from sonokit.io import write_video

    return write_video(path, render_overlay(frames, **kw), fps=float(fps or 30.0))
