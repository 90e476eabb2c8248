"""Probe geometry, the beam-space sampling grid and scan conversion into a Cartesian image.

Simulation happens in beam space (range x beam), where a scanner acquires: attenuation and shadowing act along
columns, the point-spread function is separable, and B-lines or A-lines follow beams. Scan conversion then maps
the beam image into the fan (phased array or convex) or rectangle (linear) of the displayed picture.

Pixel convention: pixel (row i, column j) has its centre at integer coordinates (x=j, y=i), so tracings and boxes
written in pixels line up with `skimage.draw` and OpenCV.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProbeGeometry:
    """How beams leave the probe. Lengths in mm, angles in degrees.

    kind: "sector" (phased array, apex at the skin), "convex" (virtual apex `radius_mm` behind the skin) or
    "linear" (parallel vertical beams across `width_mm`). `zoom` > 1 crops the fan's sides to fill the image, as
    scanners' zoom does; the depth always fits.
    """

    kind: str = "sector"
    depth_mm: float = 150.0
    angle_deg: float = 75.0
    width_mm: float = 40.0
    radius_mm: float = 40.0
    zoom: float = 1.0
    top_mm: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("sector", "convex", "linear"):
            raise ValueError(f"unknown probe kind {self.kind!r}")

    @property
    def apex_offset_mm(self) -> float:
        """Distance from the beams' common origin to the skin along the central beam."""
        return self.radius_mm if self.kind == "convex" else 0.0

    def extent(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, z_min, z_max) in mm of the imaged region."""
        if self.kind == "linear":
            return -self.width_mm / 2, self.width_mm / 2, 0.0, self.depth_mm
        half = np.deg2rad(self.angle_deg / 2)
        r0 = self.apex_offset_mm
        r1 = r0 + self.depth_mm
        x = r1 * np.sin(half)
        return -x, x, 0.0, self.depth_mm


@dataclass(frozen=True)
class ImageFrame:
    """Maps output pixels to mm: x_mm = x_center + (col - (W-1)/2) * mm_per_px, z_mm = z_top + (row + 0.5) * mm_per_px."""

    size: int
    mm_per_px: float
    x_center: float
    z_top: float

    def to_px(self, x_mm: np.ndarray, z_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        col = (np.asarray(x_mm) - self.x_center) / self.mm_per_px + (self.size - 1) / 2
        row = (np.asarray(z_mm) - self.z_top) / self.mm_per_px - 0.5
        return col, row

    def to_mm(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.x_center + (np.asarray(col, dtype=np.float64) - (self.size - 1) / 2) * self.mm_per_px
        z = self.z_top + (np.asarray(row, dtype=np.float64) + 0.5) * self.mm_per_px
        return x, z


def image_frame(geom: ProbeGeometry, size: int) -> ImageFrame:
    """Square output frame that shows the whole depth and as much width as `zoom` allows."""
    x0, x1, z0, z1 = geom.extent()
    height = z1 - geom.top_mm
    width = (x1 - x0) / max(geom.zoom, 1e-6)
    mm_per_px = max(height, width) / size
    return ImageFrame(size=size, mm_per_px=float(mm_per_px), x_center=0.0, z_top=float(geom.top_mm))


@dataclass(frozen=True)
class BeamGrid:
    """Sample positions of the beam-space image: rows are range samples, columns beams.

    `depth` is the distance travelled from the skin along each beam (mm), `lateral` the beam's position along
    the skin (mm: x for linear probes, arc length at the skin for convex ones; for a sector probe, whose beams
    share one point, the angle in rad), `theta` the beam angle (rad, 0 for linear probes).
    """

    geom: ProbeGeometry
    n_r: int
    n_l: int
    x: np.ndarray
    z: np.ndarray
    depth: np.ndarray
    lateral: np.ndarray
    theta: np.ndarray
    dr_mm: float
    dl_mm: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_r, self.n_l


@functools.lru_cache(maxsize=64)
def beam_grid(geom: ProbeGeometry, n_r: int, n_l: int) -> BeamGrid:
    """The (n_r, n_l) beam-space sample grid of a probe (cached: many frames share one geometry)."""
    depth = np.linspace(0.0, geom.depth_mm, n_r, dtype=np.float64)
    if geom.kind == "linear":
        lat = np.linspace(-geom.width_mm / 2, geom.width_mm / 2, n_l)
        x = np.broadcast_to(lat[None, :], (n_r, n_l))
        z = np.broadcast_to(depth[:, None], (n_r, n_l))
        theta = np.zeros(n_l)
        dl = geom.width_mm / max(n_l - 1, 1)
    else:
        half = np.deg2rad(geom.angle_deg / 2)
        theta = np.linspace(-half, half, n_l)
        r0 = geom.apex_offset_mm
        r = r0 + depth[:, None]
        x = r * np.sin(theta)[None, :]
        z = r * np.cos(theta)[None, :] - r0
        lat = theta * r0 if geom.kind == "convex" else theta
        dl = float(np.deg2rad(geom.angle_deg) / max(n_l - 1, 1))
    f32 = np.float32
    return BeamGrid(
        geom=geom,
        n_r=n_r,
        n_l=n_l,
        x=np.ascontiguousarray(x, dtype=f32),
        z=np.ascontiguousarray(z, dtype=f32),
        depth=depth.astype(f32)[:, None],
        lateral=lat.astype(f32)[None, :],
        theta=np.asarray(theta, dtype=f32)[None, :],
        dr_mm=float(geom.depth_mm / max(n_r - 1, 1)),
        dl_mm=float(dl),
    )


def beam_index(geom: ProbeGeometry, n_r: int, n_l: int, x_mm: np.ndarray, z_mm: np.ndarray):
    """Fractional (row, col) beam-grid indices of points (x, z) in mm; outside the fan gives -1."""
    dt = np.result_type(np.asarray(x_mm).dtype, np.float32)  # float32 in, float32 out (per-frame motion maps)
    x = np.asarray(x_mm, dtype=dt)
    z = np.asarray(z_mm, dtype=dt)
    if geom.kind == "linear":
        col = (x + geom.width_mm / 2) / geom.width_mm * (n_l - 1)
        row = z / geom.depth_mm * (n_r - 1)
    else:
        r0 = geom.apex_offset_mm
        zz = z + dt.type(r0)
        r = np.hypot(x, zz)
        th = np.arctan2(x, zz)
        half = dt.type(np.deg2rad(geom.angle_deg / 2))
        col = (th + half) / (2 * half) * (n_l - 1)
        row = (r - r0) / geom.depth_mm * (n_r - 1)
    inside = (row >= 0) & (row <= n_r - 1) & (col >= 0) & (col <= n_l - 1)
    if geom.kind != "linear":
        inside &= z + geom.apex_offset_mm > 0
    return np.where(inside, row, dt.type(-1)), np.where(inside, col, dt.type(-1))


@dataclass(frozen=True)
class ScanConverter:
    """Precomputed cv2.remap tables from a beam image to a square Cartesian image."""

    frame: ImageFrame
    map_x: np.ndarray
    map_y: np.ndarray
    fan: np.ndarray  # bool (size, size): pixels inside the imaged region

    def __call__(self, beam: np.ndarray, interpolation: int | None = None) -> np.ndarray:
        import cv2

        interp = cv2.INTER_LINEAR if interpolation is None else interpolation
        return cv2.remap(beam, self.map_x, self.map_y, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@functools.lru_cache(maxsize=64)
def scan_converter(geom: ProbeGeometry, n_r: int, n_l: int, size: int) -> ScanConverter:
    """Remap tables for (geometry, beam grid, output size); cached."""
    frame = image_frame(geom, size)
    rows, cols = np.mgrid[0:size, 0:size]
    x, z = frame.to_mm(cols, rows)
    row, col = beam_index(geom, n_r, n_l, x, z)
    fan = row >= 0
    return ScanConverter(
        frame=frame,
        map_x=col.astype(np.float32),
        map_y=row.astype(np.float32),
        fan=fan,
    )
