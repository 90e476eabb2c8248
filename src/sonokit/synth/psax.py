"""Parasternal short-axis frames at the aortic-valve level, with and without calcified cusps.

The aortic root sits among the left atrium (posterior), right atrium (left-posterior), right ventricular
outflow tract (anterior) and pulmonary artery (right). Its three cusps close into the "Mercedes-Benz" sign in
diastole and bow open in systole. Calcified patients carry bright nodules on the cusps that shadow the tissue
behind them; their number and size range from a single faint speck (mild) to thick bright cusps (severe), while
some non-calcified valves are sclerotic (brighter, thicker cusps without shadows), so the classes overlap at
the margin.

Output: images/*.png, boxes.csv (path, x1, y1, x2, y2, label="aortic_valve") and labels.csv (path, label 0/1,
group = patient), several frames per patient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonokit.synth.bmode import Acquisition, BModeRenderer, Tissue, random_acquisition
from sonokit.synth.scan import ProbeGeometry, image_frame
from sonokit.synth.shapes import blend, ellipse_sd, ramp, rotate, segment_distance, smooth_field
from sonokit.synth.writer import atomic_dir, case_rng, check_args
from sonokit.utils import get_logger, progress, write_csv

KIND_ID = 2
FRAMES_PER_PATIENT = 4
BOX_LABEL = "aortic_valve"
log = get_logger(__name__)


@dataclass(frozen=True)
class PsaxPatient:
    index: int
    calcified: bool
    severity: float  # 0 for none; (0, 1] mild .. severe
    sclerosis: float  # cusp brightness factor of non-calcified valves (1 normal, up to ~4 sclerotic)
    radius_mm: float  # aortic annulus inner radius
    wall_mm: float
    nodules: tuple[
        tuple[int, float, float, float, float], ...
    ]  # (cusp, place 0..1 on it, radius mm, echo, absorb)
    chamber_scale: float
    tissue_echo: float


@dataclass(frozen=True)
class PsaxFrame:
    patient: PsaxPatient
    index: int
    center_x: float
    center_z: float
    rotation_deg: float  # rotation of the whole anatomy
    cusp_deg: float  # rotation of the commissures
    opening: float
    geom: ProbeGeometry
    acq: Acquisition
    noise_seed: int

    @property
    def name(self) -> str:
        return f"p{self.patient.index:05d}_{self.index % FRAMES_PER_PATIENT}"


def sample_patient(seed: int, p: int) -> PsaxPatient:
    rng = case_rng(seed, KIND_ID, p, stream=1)
    calcified = bool(rng.random() < 0.5)
    nodules: list[tuple[int, float, float, float, float]] = []
    severity, sclerosis = 0.0, 1.0
    if calcified:
        severity = float(rng.beta(1.2, 1.6))  # many mild and moderate valves, some severe
        count = 1 + int(round(severity * 11 * rng.uniform(0.7, 1.0)))
        for _ in range(count):
            r = float(rng.uniform(0.7, 1.1) + 1.6 * severity * rng.random())
            echo = float(10 ** rng.uniform(1.3, 1.7 + 0.5 * severity))
            absorb = float(rng.uniform(0.25, 0.5) + 0.5 * severity)  # nepers per mm: a real shadow
            nodules.append((int(rng.integers(3)), float(rng.uniform(0.1, 0.9)), r, echo, absorb))
        sclerosis = float(rng.uniform(1.5, 2.5 + 3 * severity))
    elif rng.random() < 0.4:
        sclerosis = float(rng.uniform(1.5, 3.0))  # thickened but not calcified: the hard negatives
    return PsaxPatient(
        index=p,
        calcified=calcified,
        severity=severity,
        sclerosis=sclerosis,
        radius_mm=float(rng.uniform(9.5, 15.0)),
        wall_mm=float(rng.uniform(2.5, 4.0)),
        nodules=tuple(nodules),
        chamber_scale=float(rng.uniform(0.85, 1.2)),
        tissue_echo=float(rng.uniform(0.05, 0.16)),
    )


def sample_frame(seed: int, i: int) -> PsaxFrame:
    patient = sample_patient(seed, i // FRAMES_PER_PATIENT)
    rng = case_rng(seed, KIND_ID, i, stream=2)
    depth = float(rng.uniform(100.0, 160.0))
    geom = ProbeGeometry(
        kind="sector",
        depth_mm=depth,
        angle_deg=float(rng.uniform(70.0, 90.0)),
        zoom=float(rng.uniform(1.0, 1.25)),
    )
    opening = float(rng.uniform(0.0, 0.15)) if rng.random() < 0.7 else float(rng.uniform(0.2, 0.8))
    return PsaxFrame(
        patient=patient,
        index=i,
        center_x=float(rng.uniform(-0.14, 0.14) * depth),
        center_z=float(rng.uniform(0.38, 0.6) * depth),
        rotation_deg=float(rng.uniform(-25, 25)),
        cusp_deg=float(rng.uniform(0, 120)),
        opening=opening,
        geom=geom,
        acq=random_acquisition(rng),
        noise_seed=int(rng.integers(2**31)),
    )


def cusp_polylines(radius: float, cusp_deg: float, opening: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each of the three cusps, its two segments (commissure -> belly -> next commissure) in local (u, v).

    Closed (opening 0) the bellies meet at the centre: the three spokes of the Mercedes-Benz sign.
    """
    out = []
    for k in range(3):
        a0 = math.radians(cusp_deg + 120 * k)
        a1 = a0 + math.radians(120)
        am = a0 + math.radians(60)
        c0 = np.array([radius * math.cos(a0), radius * math.sin(a0)])
        c1 = np.array([radius * math.cos(a1), radius * math.sin(a1)])
        belly = opening * 0.78 * radius * np.array([math.cos(am), math.sin(am)])
        out.append((np.stack([c0, belly]), np.stack([belly, c1])))
    return out


def _point_on_cusp(cusp: tuple[np.ndarray, np.ndarray], t: float) -> np.ndarray:
    seg = cusp[0] if t < 0.5 else cusp[1]
    s = t * 2 if t < 0.5 else (t - 0.5) * 2
    return seg[0] + s * (seg[1] - seg[0])


def psax_tissue(frame: PsaxFrame, grid, rng: np.random.Generator) -> Tissue:
    pt = frame.patient
    u, v = rotate(grid.x, grid.z, frame.center_x, frame.center_z, frame.rotation_deg)
    f32 = np.float32
    R, w, s = pt.radius_mm, pt.wall_mm, pt.chamber_scale
    tex = np.exp(0.5 * smooth_field(rng, grid.shape, (8, 8))).astype(np.float32)
    echo = f32(pt.tissue_echo) * tex
    echo = echo + f32(0.3) * ramp(grid.z - f32(12.0), 5.0) * tex  # chest wall
    blood = f32(10 ** rng.uniform(-3.5, -2.7))
    # chambers around the root
    la = ramp(ellipse_sd(u - f32(R + w + 5 + 15 * s), v - f32(4), 15 * s, 23 * s), 1.5)
    ra = ramp(ellipse_sd(u - f32(R * 0.5 + 14 * s), v + f32(R + w + 5 + 14 * s), 15 * s, 13 * s), 1.5)
    rvot = ramp(ellipse_sd(u + f32(R + w + 4 + 9 * s), v + f32(4), 9 * s, 30 * s), 1.5)
    pa = ramp(ellipse_sd(u + f32(3), v - f32(R + w + 5 + 9 * s), 13 * s, 8.5 * s), 1.5)
    chambers = np.maximum(np.maximum(la, ra), np.maximum(rvot, pa))
    echo = blend(echo, blood, chambers)
    # aortic root: bright fibrous annulus, dark lumen
    d_ao = ellipse_sd(u, v, R * 1.04, R)
    wall = np.minimum(ramp(d_ao - f32(w), 1.0), ramp(-d_ao, 1.0))
    fib = f32(rng.uniform(0.5, 1.2))
    echo = blend(echo, fib * np.minimum(tex, f32(1.5)), wall)
    echo = blend(echo, blood, ramp(d_ao, 1.0))
    spec = np.zeros_like(echo)
    absorb = np.zeros_like(echo)
    # cusps
    cusps = cusp_polylines(R, frame.cusp_deg, frame.opening)
    thick = 0.45 + 0.25 * min(pt.sclerosis, 4.0)
    cusp_echo = f32(0.6 * pt.sclerosis)
    for cusp in cusps:
        for seg in cusp:
            d = segment_distance(u, v, seg[0, 0], seg[0, 1], seg[1, 0], seg[1, 1])
            m = ramp(d - f32(thick / 2), 0.8)
            echo = blend(echo, cusp_echo, m)
            spec += m * f32(0.1 * pt.sclerosis)
    # calcium: bright nodules that block the beam
    for k, t, r, e, a in pt.nodules:
        cu, cv = _point_on_cusp(cusps[k], t)
        d = np.sqrt((u - f32(cu)) ** 2 + (v - f32(cv)) ** 2) - f32(r)
        m = ramp(d, 0.8)
        echo = blend(echo, f32(e), m)
        spec += m * f32(math.sqrt(e))
        absorb += m * f32(a)
    return Tissue(echo=echo, specular=spec, absorb=absorb)


def valve_box_px(frame: PsaxFrame, size: int) -> tuple[float, float, float, float]:
    """Box (x1, y1, x2, y2) in pixels around the aortic root's outer wall (clipped to the image)."""
    pt = frame.patient
    a, b = pt.radius_mm * 1.04 + pt.wall_mm, pt.radius_mm + pt.wall_mm
    t = math.radians(frame.rotation_deg)
    hx = math.hypot(a * math.sin(t), b * math.cos(t))
    hz = math.hypot(a * math.cos(t), b * math.sin(t))
    img = image_frame(frame.geom, size)
    x1, y1 = img.to_px(frame.center_x - hx, frame.center_z - hz)
    x2, y2 = img.to_px(frame.center_x + hx, frame.center_z + hz)
    lim = size - 1
    return (
        float(np.clip(round(float(x1), 2), 0, lim)),
        float(np.clip(round(float(y1), 2), 0, lim)),
        float(np.clip(round(float(x2), 2), 0, lim)),
        float(np.clip(round(float(y2), 2), 0, lim)),
    )


def render_psax(frame: PsaxFrame, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(frame.noise_seed)
    renderer = BModeRenderer(frame.geom, frame.acq, size)
    tissue = psax_tissue(frame, renderer.grid, rng)
    return renderer.frame(tissue, renderer.new_scatter(rng), rng)


def make_psax_dataset(
    out: str | Path, n: int = 32, seed: int = 0, size: int = 128, overwrite: bool = False
) -> Path:
    """Write `n` PSAX frames (FRAMES_PER_PATIENT per patient) with valve boxes and calcification labels."""
    import pandas as pd

    from sonokit.io import write_image

    check_args(n, size, seed)
    with atomic_dir(out, overwrite) as tmp:
        boxes, labels, metas = [], [], []
        for i in progress(range(int(n)), desc="synth psax", total=int(n), unit="image"):
            frame = sample_frame(seed, i)
            rel = f"images/{frame.name}.png"
            write_image(tmp / rel, render_psax(frame, size))
            x1, y1, x2, y2 = valve_box_px(frame, size)
            boxes.append({"path": rel, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "label": BOX_LABEL})
            group = f"p{frame.patient.index:05d}"
            labels.append({"path": rel, "label": int(frame.patient.calcified), "group": group})
            metas.append(
                {
                    "path": rel,
                    "severity": round(frame.patient.severity, 4),
                    "nodules": len(frame.patient.nodules),
                    "sclerosis": round(frame.patient.sclerosis, 3),
                    "opening": round(frame.opening, 3),
                    "mm_per_px": round(image_frame(frame.geom, size).mm_per_px, 6),
                }
            )
        write_csv(pd.DataFrame(metas), tmp / "synth_meta.csv")
        write_csv(pd.DataFrame(boxes), tmp / "boxes.csv")
        write_csv(pd.DataFrame(labels), tmp / "labels.csv")
    log.info("wrote %d simulated PSAX frames to %s", n, out)
    return Path(out)
