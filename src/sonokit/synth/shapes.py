"""Geometric primitives that phantoms use to paint echogenicity on a beam grid's (x, z) coordinates in mm.

Signed distances (negative inside) let one shape give a cavity, the wall around it and a bright rim, and a
linear ramp turns them into soft masks whose edges the point-spread function then blurs like a real scanner.
"""

from __future__ import annotations

import numpy as np

_F = np.float32


def rotate(
    x: np.ndarray, z: np.ndarray, ox: float, oz: float, angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u, v) in a frame at (ox, oz) whose u axis points along angle_deg (0 = straight down, +z).

    Positive angles turn u towards +x; v is u turned by -90 degrees (towards +x when angle is 0).
    """
    t = np.deg2rad(angle_deg)
    c, s = _F(np.cos(t)), _F(np.sin(t))
    dx, dz = x - _F(ox), z - _F(oz)
    return dx * s + dz * c, dx * c - dz * s


def from_local(
    u: np.ndarray, v: np.ndarray, ox: float, oz: float, angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `rotate`: (x, z) of local coordinates (u, v)."""
    t = np.deg2rad(angle_deg)
    c, s = np.cos(t), np.sin(t)
    u = np.asarray(u)
    v = np.asarray(v)
    if u.dtype == np.float32:  # per-frame maps stay float32; scalars and tracings are float64
        c, s, ox, oz = _F(c), _F(s), _F(ox), _F(oz)
    else:
        u, v = u.astype(np.float64), v.astype(np.float64)
    return ox + u * s + v * c, oz + u * c - v * s


def ellipse_sd(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipse centred at the origin (exact for circles).

    First-order: (sqrt(F) - 1) / |grad sqrt(F)| with F = (u/a)^2 + (v/b)^2; accurate near the boundary, which is
    where walls and rims are painted.
    """
    ua, vb = u / _F(a), v / _F(b)
    f = np.sqrt(ua * ua + vb * vb)
    g = np.sqrt((ua / _F(a)) ** 2 + (vb / _F(b)) ** 2)
    eps = _F(1e-6)
    return (f - 1) * (f + eps) / (g + eps / _F(min(a, b)))


def ellipse_at(
    x: np.ndarray, z: np.ndarray, cx: float, cz: float, a: float, b: float, angle_deg: float = 0.0
):
    """Signed distance to an ellipse centred at (cx, cz) with semi-axis a along angle_deg and b across."""
    u, v = rotate(x, z, cx, cz, angle_deg)
    return ellipse_sd(u, v, a, b)


def segment_distance(x: np.ndarray, z: np.ndarray, x0: float, z0: float, x1: float, z1: float) -> np.ndarray:
    """Distance (mm) from every point to the segment (x0, z0)-(x1, z1)."""
    dx, dz = _F(x1 - x0), _F(z1 - z0)
    ll = float(dx * dx + dz * dz)
    px, pz = x - _F(x0), z - _F(z0)
    t = np.clip((px * dx + pz * dz) / _F(max(ll, 1e-9)), 0, 1) if ll > 0 else _F(0)
    ex, ez = px - t * dx, pz - t * dz
    return np.sqrt(ex * ex + ez * ez)


def ramp(d: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Soft inside-mask of a signed distance: 1 well inside, 0 well outside, linear over `width` mm."""
    t = _F(0.5) - d * _F(1.0 / width)
    np.maximum(t, 0, out=t)
    return np.minimum(t, 1, out=t)


def band(d: np.ndarray, inner: float, outer: float, width: float = 1.0) -> np.ndarray:
    """Soft mask of inner < d < outer (a shell around a shape)."""
    return np.minimum(ramp(d - _F(outer), width), ramp(_F(inner) - d, width))


def blend(base: np.ndarray, value: float | np.ndarray, mask: np.ndarray) -> np.ndarray:
    """base where mask is 0, value where it is 1."""
    return base + (value - base) * mask


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int] = (6, 6)
) -> np.ndarray:
    """Zero-mean, unit-variance low-frequency random field (cubic upsampling of a coarse grid)."""
    import cv2

    coarse = rng.standard_normal((cells[0] + 3, cells[1] + 3)).astype(np.float32)
    big = cv2.resize(
        coarse,
        (shape[1] + 2 * (shape[1] // cells[1]), shape[0] + 2 * (shape[0] // cells[0])),
        interpolation=cv2.INTER_CUBIC,
    )
    oy, ox = shape[0] // cells[0], shape[1] // cells[1]
    out = big[oy : oy + shape[0], ox : ox + shape[1]]
    return (out - out.mean()) / (out.std() + 1e-6)
