"""Simpson's single-plane method of discs: LV volume from a tracing (long axis + chords) or from a mask.

A tracing is an (n + 1, 4) array of X1, Y1, X2, Y2 rows in pixels, as in EchoNet-Dynamic's VolumeTracings.csv:
row 0 is the long axis (length L), rows 1..n are chords perpendicular to it (disc diameters d_i), and
V = sum(pi / 4 * d_i**2 * L / n). Masks are turned into tracings first, so both paths share one formula.
"""

from __future__ import annotations

import math

import numpy as np

from sonokit.errors import InputError

Spacing = float | tuple[float, float] | None


def _scale(spacing_mm: Spacing) -> tuple[float, float]:
    """(sx, sy): mm per pixel along X (columns) and Y (rows). A tuple is (row, column) like DICOM PixelSpacing."""
    if spacing_mm is None:
        return 1.0, 1.0
    if isinstance(spacing_mm, tuple | list | np.ndarray):
        if len(spacing_mm) != 2:
            raise InputError(f"spacing_mm must be a number or a (row, column) pair, got {spacing_mm!r}")
        sy, sx = float(spacing_mm[0]), float(spacing_mm[1])
    else:
        sx = sy = float(spacing_mm)
    if not (math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0):
        raise InputError(f"spacing_mm must be positive and finite, got {spacing_mm!r}")
    return sx, sy


def _check_lines(lines: np.ndarray) -> np.ndarray:
    arr = np.asarray(lines, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] < 2:
        raise InputError(
            f"a tracing must be an (n + 1, 4) array of X1, Y1, X2, Y2 rows, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise InputError("the tracing contains NaN or infinite coordinates")
    return arr


def volume_from_tracing(lines: np.ndarray, spacing_mm: Spacing = None) -> float:
    """Volume by Simpson's discs: pixels**3 when `spacing_mm` is None, else mL (mm**3 / 1000).

    `lines` is (21, 4) in EchoNet's layout (any n + 1 rows work: L / n per disc). The result does not depend on
    the tracing's orientation. `spacing_mm` is one number, or (row, column) spacing for non-square pixels.
    """
    arr = _check_lines(lines)
    sx, sy = _scale(spacing_mm)
    dx = (arr[:, 2] - arr[:, 0]) * sx
    dy = (arr[:, 3] - arr[:, 1]) * sy
    lengths = np.hypot(dx, dy)
    n = len(arr) - 1
    volume = float(np.sum(np.pi / 4.0 * lengths[1:] ** 2) * lengths[0] / n)
    return volume / 1000.0 if spacing_mm is not None else volume


def _largest_contour(mask: np.ndarray) -> np.ndarray | None:
    """The outer boundary (sub-pixel, (k, 2) as x, y) of the largest region in a boolean mask."""
    from skimage import measure

    padded = np.pad(mask.astype(np.float32), 1)
    contours = measure.find_contours(padded, 0.5)
    best, best_area = None, 0.0
    for c in contours:
        y, x = c[:, 0] - 1.0, c[:, 1] - 1.0
        area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        if area > best_area:
            best, best_area = np.stack([x, y], axis=1), area
    return best


def _line_polygon_hits(poly: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Parameters t where origin + t * direction crosses the closed polygon's edges (vectorised)."""
    a = poly
    b = np.roll(poly, -1, axis=0)
    e = b - a
    denom = direction[0] * e[:, 1] - direction[1] * e[:, 0]
    w = a - origin
    ok = np.abs(denom) > 1e-12
    denom = np.where(ok, denom, 1.0)
    t = (w[:, 0] * e[:, 1] - w[:, 1] * e[:, 0]) / denom
    s = (w[:, 0] * direction[1] - w[:, 1] * direction[0]) / denom
    hit = ok & (s >= 0.0) & (s < 1.0)
    return t[hit]


def tracing_from_mask(mask: np.ndarray, n_discs: int = 20) -> np.ndarray:
    """Long axis and `n_discs` perpendicular chords of a cavity mask, as an (n_discs + 1, 4) tracing.

    The long axis is the principal (PCA) axis of the largest region through its centroid, clipped by the
    sub-pixel contour; chords cross it at the centres of n_discs equal segments. X1, Y1 of every chord lie on
    the same side of the axis (EchoNet's convention, so the chords make a polygon).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    if n_discs < 1:
        raise InputError(f"n_discs must be at least 1, got {n_discs}")
    m = m.astype(bool)
    if m.sum() < 3:
        raise InputError(f"the mask has {int(m.sum())} foreground pixels; a tracing needs a region")
    poly = _largest_contour(m)
    if poly is None or len(poly) < 3:
        raise InputError("no closed region found in the mask")
    from skimage.draw import polygon2mask

    region = polygon2mask(m.shape, poly[:, ::-1]) & m
    ys, xs = np.nonzero(region if region.sum() >= 3 else m)
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    centroid = pts.mean(axis=0)
    cov = np.cov((pts - centroid).T)
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, int(np.argmax(evals))]
    # orient the axis downwards in the image (towards larger y) so the result is deterministic
    if axis[1] < 0 or (axis[1] == 0 and axis[0] < 0):
        axis = -axis
    normal = np.array([-axis[1], axis[0]])
    t = _line_polygon_hits(poly, centroid, axis)
    if len(t) < 2:
        raise InputError("could not find the long axis of the mask")
    p0, p1 = centroid + t.min() * axis, centroid + t.max() * axis
    length = t.max() - t.min()
    rows = [np.concatenate([p0, p1])]
    for i in range(n_discs):
        c = p0 + (i + 0.5) / n_discs * length * axis
        s = _line_polygon_hits(poly, c, normal)
        if len(s) < 2:
            rows.append(np.concatenate([c, c]))
            continue
        rows.append(np.concatenate([c + s.max() * normal, c + s.min() * normal]))
    return np.asarray(rows, dtype=np.float64)


def volume_from_mask(mask: np.ndarray, spacing_mm: Spacing = None, n_discs: int = 20) -> float:
    """Simpson's volume of a cavity mask (pixels**3, or mL with `spacing_mm`); 0.0 for an empty mask.

    An empty prediction is a valid answer for a segmentation model, so it gives zero rather than an error.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    if not m.astype(bool).any():
        _scale(spacing_mm)
        return 0.0
    return volume_from_tracing(tracing_from_mask(m, n_discs), spacing_mm)


def tracing_polygon(lines: np.ndarray) -> np.ndarray:
    """The cavity outline (k, 2) as x, y: one side of the chords from apex to base, then the other side back.

    Chord endpoints are split by the side of the long axis they lie on, so tracings whose X1 / X2 columns are
    swapped between rows still give a simple polygon.
    """
    arr = _check_lines(lines)
    a0, a1 = arr[0, :2], arr[0, 2:]
    axis = a1 - a0
    norm = float(np.hypot(*axis))
    chords = arr[1:]
    if norm < 1e-9:
        axis = np.array([0.0, 1.0])
    else:
        axis = axis / norm
    ends = np.concatenate([chords[:, :2], chords[:, 2:]], axis=0)
    rel = ends - a0
    along = rel @ axis
    side = rel[:, 0] * axis[1] - rel[:, 1] * axis[0]
    left = ends[side >= 0][np.argsort(along[side >= 0])]
    right = ends[side < 0][np.argsort(-along[side < 0])]
    return np.concatenate([left, right], axis=0)


def rasterize_tracing(lines: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the polygon made by the chord endpoints (pixel centres inside are True)."""
    from skimage.draw import polygon2mask

    if len(shape) != 2 or min(shape) <= 0:
        raise InputError(f"shape must be (H, W) with positive sizes, got {shape!r}")
    poly = tracing_polygon(lines)
    if len(poly) < 3:
        return np.zeros(shape, dtype=bool)
    return polygon2mask(tuple(int(s) for s in shape), poly[:, ::-1])


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in percent: (EDV - ESV) / EDV * 100 (any volume unit, the same for both)."""
    edv, esv = float(edv), float(esv)
    if not (math.isfinite(edv) and math.isfinite(esv)):
        raise InputError(f"EDV and ESV must be finite numbers, got EDV={edv}, ESV={esv}")
    if edv <= 0:
        raise InputError(f"EDV must be positive to compute an ejection fraction, got {edv}")
    if esv < 0:
        raise InputError(f"ESV must not be negative, got {esv}")
    return (edv - esv) / edv * 100.0
