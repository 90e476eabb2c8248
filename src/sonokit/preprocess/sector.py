"""Find the ultrasound imaging region (a sector fan or a linear-probe rectangle) in scanner frames.

Scanner screens carry burned-in text, scales and icons around the image; models must not learn from them and
exported frames must not leak them. The imaging region is found in two steps:

1. A candidate mask from pixel statistics. In a cine, speckle changes from frame to frame while overlay text and
   background do not, so the temporal standard deviation marks the imaging region. A single image (or a frozen
   cine) has only brightness: the background is a flat dark level, and a morphological opening cuts thin text
   strokes away from the fan.
2. A geometric fit to that candidate. A sector is bounded by two straight edges meeting at an apex and by arcs
   centred on it; the edges come from RANSAC lines through the left and right boundary of each row, the radii
   from rays cast from the apex. A linear probe gives a rectangle. The fitted shape fills the parts of the fan
   where the candidate is weak (dark blood pools, faded far field, JPEG blocks quantised to zero). When neither
   shape explains the candidate, the candidate itself (its largest component, holes filled) is the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from sonokit.errors import InputError
from sonokit.preprocess.frames import as_stack, gray_stack, image_shape
from sonokit.utils import get_logger

log = get_logger(__name__)

# Temporal std (grey levels) above which a pixel counts as changing. JPEG noise on static text stays below it;
# speckle, even in dark cavities, mostly exceeds it, and the geometric fit fills what it misses.
_STD_THRESHOLD = 1.0
# Frames with a longer side above this are analysed on a downscaled copy (bounded time and memory).
DETECT_MAX_SIDE = 1024
# A fitted shape is accepted when it overlaps the candidate at least this much (IoU). A rectangle must match
# more closely: it has no dark bays to excuse a gap, and a loose rectangle swallows side panels.
_ACCEPT_SECTOR = 0.85
_ACCEPT_LINEAR = 0.97
# A fan edge leans outwards by more than 1.5 degrees; anything steeper is a window side or a linear probe.
_MIN_EDGE_SLOPE = float(np.tan(np.radians(1.5)))


@dataclass(frozen=True, eq=False)
class SectorGeometry:
    """Where the imaging region lies in the original frames.

    kind: "sector" (fan: apex, edge angles and radii are set), "linear" (rectangle) or "region" (no shape fitted
    the data; the mask is the detected region itself). Angles are measured at the apex from the downward vertical,
    positive towards +x (image right), so a symmetric 90-degree fan has angles_deg == (-45, 45). Radii are the
    inner and outer arc radii in pixels; where the image (or the scanner's display window) cuts an arc off, it
    cannot be seen, and the inner radius is reported as 0 and the outer as the farthest image corner. For a fan
    clipped by a display window the mask is the fan inside that window.
    """

    kind: Literal["sector", "linear", "region"]
    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    apex: tuple[float, float] | None = None
    angles_deg: tuple[float, float] | None = None
    radii: tuple[float, float] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the frames the geometry belongs to."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def area_frac(self) -> float:
        """Fraction of the frame inside the imaging region."""
        return float(self.mask.mean())

    def as_dict(self) -> dict:
        """JSON-safe summary without the mask (for metadata files and logs)."""
        return {
            "kind": self.kind,
            "shape": list(self.shape),
            "bbox": list(self.bbox),
            "apex": None if self.apex is None else [round(v, 2) for v in self.apex],
            "angles_deg": None if self.angles_deg is None else [round(v, 3) for v in self.angles_deg],
            "radii": None if self.radii is None else [round(v, 2) for v in self.radii],
            "area_frac": round(self.area_frac, 4),
        }


# --------------------------------------------------------------------------------------------------- shapes


def render_sector(
    shape: tuple[int, int],
    apex: tuple[float, float],
    angles_deg: tuple[float, float],
    radii: tuple[float, float],
) -> np.ndarray:
    """(H, W) bool mask of the pixels (centres at integer coordinates) inside a fan; used by the fit and by tests."""
    h, w = shape
    ys, xs = np.ogrid[:h, :w]
    dx = xs.astype(np.float32) - np.float32(apex[0])
    dy = ys.astype(np.float32) - np.float32(apex[1])
    r = np.hypot(dx, dy)
    phi = np.degrees(np.arctan2(dx, dy))
    return (phi >= angles_deg[0]) & (phi <= angles_deg[1]) & (r >= radii[0]) & (r <= radii[1])


def render_rect(shape: tuple[int, int], bbox: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W) bool mask that is True inside bbox = (x0, y0, x1, y1), x1/y1 exclusive."""
    mask = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = bbox
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the True pixels, x1/y1 exclusive; (0, 0, 0, 0) for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


# ------------------------------------------------------------------------------------------------ candidate


def _kernel(shape: tuple[int, int]) -> np.ndarray:
    """Structuring element scaled to the frame (7 px at 240x320, 13 px at 480x640): wider than text strokes."""
    k = max(3, int(round(min(shape) / 40)) | 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of a mask: a fan is convex but for its shallow inner arc, so the hull of a candidate
    with dark bays (blood pools, amniotic fluid reaching the edge) is closer to the fan than the candidate."""
    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros(mask.shape, np.uint8)
    if contours:
        cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(contours)), 1)
    return hull.astype(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Mask with every enclosed hole filled (4-connected background, as scipy's binary_fill_holes, ~50x faster)."""
    h, w = mask.shape
    outside = np.zeros((h + 2, w + 2), np.uint8)
    outside[1:-1, 1:-1] = mask
    cv2.floodFill(outside, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return mask | (outside[1:-1, 1:-1] == 0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _background_threshold(img: np.ndarray) -> int:
    """Grey level above which a pixel is signal: exactly the background level when that is one flat value
    (rendered screens, HC18's zeros), a few levels above it when compression noise blurs it."""
    lo = int(np.percentile(img, 1))
    return lo if np.count_nonzero(img == lo) >= 0.05 * img.size else lo + 4


def candidate_mask(gray: np.ndarray, min_area_frac: float = 0.05) -> tuple[np.ndarray, str]:
    """Rough imaging-region mask of a (F,H,W) uint8 stack and the cue used ("temporal" or "intensity").

    The temporal cue is used when it finds a region of at least `min_area_frac`; a frozen cine whose only
    motion is an ECG sweep or a frame counter falls back to brightness.
    """
    shape = gray.shape[1:]
    kernel = _kernel(shape)
    if gray.shape[0] >= 2:
        g = gray.astype(np.float32)
        mean = g.mean(axis=0)
        std = np.sqrt(np.maximum((g * g).mean(axis=0) - mean * mean, 0.0))
        moving = (std > _STD_THRESHOLD).view(np.uint8)
        moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, kernel)
        cand = _finish(moving.astype(bool), kernel)
        if cand.mean() >= min_area_frac:
            return cand, "temporal"
        log.debug("cine barely changes (moving region %.4f of the frame); using brightness", cand.mean())
    img = gray.max(axis=0)
    fg = (img > _background_threshold(img)).view(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
    return _finish(fg.astype(bool), kernel), "intensity"


def _finish(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Largest component, bridged and with holes (dark cavities) filled."""
    mask = _largest_component(mask)
    mask = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    return fill_holes(mask)


# ------------------------------------------------------------------------------------------------- fitting


def _robust_mode(values: np.ndarray, tol: float) -> tuple[float, int]:
    """Median of the densest cluster (width 2*tol) of values and its size: the arc or edge most rows agree on."""
    v = np.sort(values)
    lo = np.searchsorted(v, v - tol, side="left")
    hi = np.searchsorted(v, v + tol, side="right")
    k = int(np.argmax(hi - lo))
    return float(np.median(v[lo[k] : hi[k]])), int(hi[k] - lo[k])


def _ransac_line(
    y: np.ndarray, x: np.ndarray, tol: float, sign: int, rng: np.random.Generator, n_iter: int = 300
) -> tuple[float, float, int] | None:
    """Line x = a + b*y through the most points within `tol` px (perpendicular), refined by least squares.

    Only lines leaning outwards (sign * b above tan(1.5 deg): down-left for the left edge, down-right for the
    right) are fan edges; vertical runs are window sides and the edges of black boxes."""
    n = y.size
    if n < 8:
        return None
    i, j = rng.integers(0, n, n_iter), rng.integers(0, n, n_iter)
    sep = np.abs(y[j] - y[i]) >= max(3.0, 0.1 * float(np.ptp(y)))
    if not sep.any():
        return None
    i, j = i[sep], j[sep]
    b = (x[j] - x[i]) / (y[j] - y[i])
    outward = sign * b > _MIN_EDGE_SLOPE
    if not outward.any():
        return None
    i, j, b = i[outward], j[outward], b[outward]
    a = x[i] - b * y[i]
    res = np.abs(x[None, :] - a[:, None] - b[:, None] * y[None, :]) / np.sqrt(1.0 + b * b)[:, None]
    inliers = res[int(np.argmax((res <= tol).sum(axis=1)))] <= tol
    for _ in range(2):  # least-squares refinement on the consensus set
        if inliers.sum() < 2:
            return None
        b1, a1 = np.polyfit(y[inliers], x[inliers], 1)
        inliers = np.abs(x - a1 - b1 * y) / np.hypot(1.0, b1) <= tol
    if sign * b1 <= _MIN_EDGE_SLOPE:
        return None
    return float(a1), float(b1), int(inliers.sum())


def _row_profiles(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows holding mask pixels, and the first and last mask column in each."""
    rows = np.flatnonzero(mask.any(axis=1))
    sub = mask[rows]
    left = sub.argmax(axis=1)
    right = mask.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    return rows.astype(np.float64), left.astype(np.float64), right.astype(np.float64)


def _cast_rays(
    mask: np.ndarray,
    apex: tuple[float, float],
    angles: np.ndarray,
    r_max: float,
    window: tuple[int, int, int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Walk rays from the apex: first/last region radius per ray, and whether the window stopped each there."""
    x0, y0, x1, y1 = window
    r = np.arange(0.0, r_max, 1.0)
    th = np.radians(angles)[:, None]
    x = np.rint(apex[0] + r * np.sin(th)).astype(np.int64)
    y = np.rint(apex[1] + r * np.cos(th)).astype(np.int64)
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    hit = np.zeros_like(inside)
    hit[inside] = mask[y[inside], x[inside]]
    has = hit.any(axis=1)
    first_in = np.argmax(inside, axis=1)
    last_in = r.size - 1 - np.argmax(inside[:, ::-1], axis=1)
    first_hit = np.argmax(hit, axis=1)
    last_hit = r.size - 1 - np.argmax(hit[:, ::-1], axis=1)
    r_in, r_out = r[first_hit], r[last_hit]
    clipped_in = first_hit <= first_in + 1
    clipped_out = last_hit >= last_in - 1
    return r_in[has], r_out[has], clipped_in[has], clipped_out[has]


def _window(cand: np.ndarray, min_support: float = 0.1) -> tuple[int, int, int, int]:
    """The display window (x0, y0, x1, y1) that clips the region: scanners and anonymisers crop the fan with
    straight vertical/horizontal lines. A side is such a line when many rows (columns) end on it and almost no
    region lies beyond it (a black box cut into one corner is not a window side); otherwise it is the image
    border."""
    h, w = cand.shape
    area = max(int(cand.sum()), 1)
    col_mass = np.concatenate([[0], np.cumsum(cand.sum(axis=0))])  # col_mass[x] = region pixels left of x
    row_mass = np.concatenate([[0], np.cumsum(cand.sum(axis=1))])
    sides = []
    for profile, mass, size, lower in (
        (_row_profiles(cand)[1], col_mass, w, True),
        (_row_profiles(cand.T)[1], row_mass, h, True),
        (_row_profiles(cand)[2], col_mass, w, False),
        (_row_profiles(cand.T)[2], row_mass, h, False),
    ):
        value, support = _robust_mode(profile, 0.5)
        edge = int(round(value)) if lower else int(round(value)) + 1
        beyond = mass[max(edge - 1, 0)] if lower else area - mass[min(edge + 1, size)]
        # A long side may have overlays (colour bars) sticking out past it; a short run must have nothing
        # beyond it, or it is an arc's extreme (which gathers many rows near one value but leaves its ends out).
        frac = support / profile.size
        is_side = (frac >= 0.25 and beyond <= 0.03 * area) or (
            frac >= min_support and beyond <= 0.0005 * area
        )
        sides.append(edge if is_side else (0 if lower else size))
    x0, y0, x1, y1 = sides
    return x0, y0, x1, y1


def _outer_radius(r_out: np.ndarray, clipped: np.ndarray, tol: float, r_far: float) -> float:
    """Radius most unclipped rays end at, provided hardly any ray runs past it.

    Rays that end early (dark far field, a black box pasted over the fan) cluster below the arc; a cluster that
    many rays overshoot (the region goes on to the window) is one of those, so the next cluster up is tried. With
    no consistent cluster the arc lies outside the window and r_far is returned."""
    vals = np.sort(r_out[~clipped])
    while vals.size >= 4:
        r = _robust_mode(vals, tol)[0]
        if np.mean(r_out > max(r + 3 * tol, 1.05 * r)) <= 0.1:  # JPEG blocks may poke a few px past the arc
            return r
        vals = vals[vals > r + tol]
    return r_far


def _fit_sector(
    cand: np.ndarray, window: tuple[int, int, int, int], rng: np.random.Generator
) -> SectorGeometry | None:
    """Fan = two straight edges meeting at an apex above the region, inner and outer arcs centred on the apex,
    clipped by the display window."""
    h, w = cand.shape
    x0, y0, x1, y1 = window
    rows, left, right = _row_profiles(cand)
    tol = max(1.5, 0.004 * min(h, w))
    # Rows that end on the window (or image border) say nothing about the fan's edges.
    ok_l, ok_r = left > x0 + 1, right < x1 - 2
    fit_l = _ransac_line(rows[ok_l], left[ok_l], tol, -1, rng)
    fit_r = _ransac_line(rows[ok_r], right[ok_r], tol, 1, rng)
    if fit_l is None or fit_r is None:
        return None
    (a_l, b_l, n_l), (a_r, b_r, n_r) = fit_l, fit_r
    if min(n_l, n_r) < max(8, 0.1 * rows.size):
        return None
    ang_l, ang_r = np.degrees(np.arctan(b_l)), np.degrees(np.arctan(b_r))
    apex_y = (a_r - a_l) / (b_l - b_r)
    apex_x = a_l + b_l * apex_y
    if apex_y > rows[0] + 0.05 * h:  # edges must meet above the region, not inside it
        return None
    apex = (float(apex_x), float(apex_y))
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    r_far = float(np.hypot(*(corners - apex).T).max()) + 2.0
    span = ang_r - ang_l
    rays = np.linspace(ang_l + 0.1 * span, ang_r - 0.1 * span, 64)
    r_in, r_out, clip_in, clip_out = _cast_rays(cand, apex, rays, r_far, window)
    if r_in.size < 8:
        return None
    tol_r = max(2.0, 0.01 * float(np.median(r_out)))
    # The near field is often dark or flat-topped, so the inner radius is where the region starts on most rays
    # (a low percentile), not the commonest start. Arcs the window cuts off are left unbounded.
    r1 = float(np.percentile(r_in[~clip_in], 10)) if (~clip_in).sum() >= 4 else 0.0
    r2 = _outer_radius(r_out, clip_out, tol_r, r_far)
    if r2 <= r1:
        return None
    angles = (float(ang_l), float(ang_r))
    mask = render_sector((h, w), apex, angles, (r1, r2)) & render_rect((h, w), window)
    return SectorGeometry("sector", mask, mask_bbox(mask), apex, angles, (float(r1), float(r2)))


# ----------------------------------------------------------------------------------------------- public API


def detect_sector(frames: np.ndarray, *, min_area_frac: float = 0.05) -> SectorGeometry:
    """Find the imaging region of a single image or a cine: (H,W), (H,W,3), (F,H,W) or (F,H,W,3) uint8.

    Raises InputError when no region covering at least `min_area_frac` of the frame is found (a blank frame,
    a screen of text).
    """
    h, w = image_shape(frames)
    gray = gray_stack(frames)
    if max(h, w) > DETECT_MAX_SIDE:
        return _detect_downscaled(gray, min_area_frac)
    cand, cue = candidate_mask(gray, min_area_frac)
    if cand.sum() < min_area_frac * h * w:
        raise InputError(
            f"no ultrasound imaging region found: the largest region covers {cand.mean():.1%} of the "
            f"frame, below min_area_frac={min_area_frac:.0%}"
        )
    window = _window(cand)
    sector = _fit_sector(cand, window, np.random.default_rng(0))
    if sector is not None:
        # A fan may legitimately hold dark bays the candidate lost, so it is judged against the convex hull too.
        score = max(_iou(sector.mask, cand), _iou(sector.mask, convex_hull(cand)))
        log.debug("%s cue: sector fit IoU %.3f", cue, score)
        if score >= _ACCEPT_SECTOR:
            return sector
    linear = SectorGeometry("linear", render_rect((h, w), window), window)
    score = _iou(linear.mask, cand)
    log.debug("%s cue: rectangle fit IoU %.3f", cue, score)
    if score >= _ACCEPT_LINEAR:
        return linear
    return SectorGeometry("region", cand, mask_bbox(cand))


def _detect_downscaled(gray: np.ndarray, min_area_frac: float) -> SectorGeometry:
    """Detect on a copy whose longer side is DETECT_MAX_SIDE and scale the geometry back: the morphology's
    kernels grow with the frame, so full-size work on a huge frame takes minutes for no better mask."""
    h, w = gray.shape[1:]
    scale = DETECT_MAX_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in gray])
    geo = detect_sector(small, min_area_frac=min_area_frac)
    sx, sy = w / size[0], h / size[1]
    mask = cv2.resize(geo.mask.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    apex = None if geo.apex is None else (geo.apex[0] * sx, geo.apex[1] * sy)
    radii = None if geo.radii is None else (geo.radii[0] * sy, geo.radii[1] * sy)
    return SectorGeometry(geo.kind, mask, mask_bbox(mask), apex, geo.angles_deg, radii)


def apply_mask(frames: np.ndarray, geometry: SectorGeometry) -> np.ndarray:
    """Copy of `frames` with every pixel outside the imaging region set to zero (burned-in text included)."""
    if image_shape(frames) != geometry.shape:
        raise InputError(f"frames are {image_shape(frames)} but the sector geometry is for {geometry.shape}")
    keep = geometry.mask.astype(frames.dtype)
    if as_stack(frames).ndim == 4:
        # A full (H,W,3) factor: numpy broadcasting over a length-1 channel axis is ~15x slower.
        keep = np.repeat(keep[..., None], 3, axis=-1)
    return frames * keep
