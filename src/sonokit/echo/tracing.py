"""LV tracings (EchoNet layout: row 0 the long axis, rows 1..n chords across it) as regression targets.

EchoNet's files do not fix which end of a line comes first, nor the chord order, so the same contour can be
written many ways. A network regressing coordinates needs one: `canonical_tracing` orders the axis from the
apex (top of the image) to the base, sorts the chords from apex to base and puts every chord's first point on
the same side of the axis. Errors between tracings are measured on canonical forms.
"""

from __future__ import annotations

import math

import numpy as np

from sonokit.clinical import tracing_polygon


def canonical_tracing(lines: np.ndarray) -> np.ndarray:
    """The same contour in the one order the tracing model learns; (n + 1, 4) float64."""
    arr = np.array(lines, dtype=np.float64, copy=True)
    a0, a1 = arr[0, :2].copy(), arr[0, 2:].copy()
    if a0[1] > a1[1] or (a0[1] == a1[1] and a0[0] > a1[0]):
        a0, a1 = a1, a0
        arr[0] = np.concatenate([a0, a1])
    axis = a1 - a0
    norm = float(np.hypot(*axis))
    u = axis / norm if norm > 1e-9 else np.array([0.0, 1.0])
    chords = arr[1:]
    mids = (chords[:, :2] + chords[:, 2:]) / 2.0
    chords = chords[np.argsort((mids - a0) @ u, kind="stable")]
    p, q = chords[:, :2] - a0, chords[:, 2:] - a0
    side_p = u[0] * p[:, 1] - u[1] * p[:, 0]
    side_q = u[0] * q[:, 1] - u[1] * q[:, 0]
    swap = side_p < side_q
    chords[swap] = np.concatenate([chords[swap, 2:], chords[swap, :2]], axis=1)
    arr[1:] = chords
    return arr


def map_tracing(lines: np.ndarray, fn) -> np.ndarray:
    """Apply a point mapping (N, 2) -> (N, 2) to both ends of every line."""
    arr = np.asarray(lines, dtype=np.float64)
    pts = fn(arr.reshape(-1, 2))
    return np.asarray(pts, dtype=np.float64).reshape(arr.shape)


def tracing_area(lines: np.ndarray) -> float:
    """Area (pixels**2) of the cavity outline a tracing's chord ends make (shoelace formula)."""
    poly = tracing_polygon(lines)
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def tracing_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Mean end-point distance and mean chord-length error (pixels) between two tracings, in canonical order."""
    p, t = canonical_tracing(pred), canonical_tracing(true)
    pts_p, pts_t = p.reshape(-1, 2), t.reshape(-1, 2)
    point = float(np.mean(np.linalg.norm(pts_p - pts_t, axis=1)))
    len_p = np.hypot(p[:, 2] - p[:, 0], p[:, 3] - p[:, 1])
    len_t = np.hypot(t[:, 2] - t[:, 0], t[:, 3] - t[:, 1])
    return {
        "point_error": point,
        "chord_length_error": float(np.mean(np.abs(len_p[1:] - len_t[1:]))),
        "axis_length_error": float(abs(len_p[0] - len_t[0])),
    }


def simpson_volume_torch(lines):
    """Simpson's method-of-discs volume of tracings as a differentiable torch function: (..., n + 1, 4) -> (...).

    The same formula as `sonokit.clinical.volume_from_tracing` (row 0 the long axis, rows 1..n the disc
    diameters; units**3 of the coordinates), so a loss on it trains what the EF is computed from. Lengths are
    sqrt(dx**2 + dy**2 + 1e-12), whose gradient stays finite for a zero-length line.
    """
    d = lines[..., 2:] - lines[..., :2]
    lengths = (d.pow(2).sum(dim=-1) + 1e-12).sqrt()
    n = lines.shape[-2] - 1
    return (math.pi / 4.0) * lengths[..., 1:].pow(2).sum(dim=-1) * lengths[..., 0] / n
