"""Fetal standard planes written in the FETAL_PLANES_DB layout.

Each image is a curvilinear (convex) scan through the maternal abdomen, amniotic fluid and one fetal section:
brain (skull ellipse, midline falx, cavum septi pellucidi, thalami / ventricles / cerebellum by sub-plane),
abdomen (round section, stomach bubble, umbilical vein, spine), femur (bright bone with a shadow), thorax (ribs,
four-chamber heart, spine); maternal cervix comes from a transvaginal probe; "Other" draws a sagittal spine, a
kidney, hand bones or an unrecognisable section. Bones are bright specular reflectors that shadow.

Output: FETAL_PLANES_DB_data.csv (semicolon-separated: Image_name; Patient_num; Plane; Brain_plane; Operator;
US_Machine; Train) and Images/<Image_name>.png (grayscale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonokit.synth.bmode import Acquisition, BModeRenderer, Tissue, random_acquisition
from sonokit.synth.scan import ProbeGeometry
from sonokit.synth.shapes import blend, ellipse_sd, ramp, rotate, segment_distance, smooth_field
from sonokit.synth.writer import atomic_dir, case_rng, check_args
from sonokit.utils import get_logger, progress, write_csv

KIND_ID = 4
IMAGES_PER_PATIENT = 4
PLANES = ("Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax", "Maternal cervix", "Other")
BRAIN_PLANES = ("Trans-thalamic", "Trans-ventricular", "Trans-cerebellum", "Other")
NOT_A_BRAIN = "Not A Brain"
OPERATORS = ("Op. 1", "Op. 2", "Op. 3", "Other")
MACHINES = ("Voluson E6", "Voluson S10", "Aloka", "Other")
log = get_logger(__name__)
f32 = np.float32
FLUID = 0.0015


@dataclass(frozen=True)
class FetalCase:
    index: int
    patient: int
    plane: str
    brain_plane: str
    operator: str
    machine: str
    train: int
    scale: float  # gestational-age size factor
    center_x: float
    center_z: float
    rotation_deg: float
    variant: int  # which "Other" section
    geom: ProbeGeometry
    acq: Acquisition
    noise_seed: int

    @property
    def name(self) -> str:
        return f"Patient{self.patient:05d}_Plane{PLANES.index(self.plane) + 1}_{self.index % IMAGES_PER_PATIENT + 1}_of_{IMAGES_PER_PATIENT}"


def sample_fetal_case(seed: int, i: int) -> FetalCase:
    p = i // IMAGES_PER_PATIENT
    prng = case_rng(seed, KIND_ID, p, stream=1)
    scale = float(prng.uniform(0.6, 1.1))
    operator = OPERATORS[int(prng.choice(4, p=[0.35, 0.3, 0.25, 0.1]))]
    machine = MACHINES[int(prng.choice(4, p=[0.45, 0.3, 0.15, 0.1]))]
    # every block of six consecutive images holds each plane once, in a random order
    perm = case_rng(seed, KIND_ID, i // len(PLANES), stream=3).permutation(len(PLANES))
    plane = PLANES[int(perm[i % len(PLANES)])]
    rng = case_rng(seed, KIND_ID, i, stream=2)
    brain_plane = NOT_A_BRAIN
    if plane == "Fetal brain":
        brain_plane = BRAIN_PLANES[int(rng.choice(4, p=[0.4, 0.25, 0.25, 0.1]))]
    if plane == "Maternal cervix":  # transvaginal: tight curvature, wide field
        geom = ProbeGeometry(
            kind="convex",
            depth_mm=float(rng.uniform(55, 90)),
            angle_deg=float(rng.uniform(110, 140)),
            radius_mm=float(rng.uniform(8, 12)),
            zoom=float(rng.uniform(1.4, 1.7)),
        )
    else:
        geom = ProbeGeometry(
            kind="convex",
            depth_mm=float(rng.uniform(85, 130) * (0.65 + 0.35 * scale)),
            angle_deg=float(rng.uniform(55, 75)),
            radius_mm=float(rng.uniform(40, 60)),
            zoom=float(rng.uniform(1.2, 1.5)),
        )
    d = geom.depth_mm
    return FetalCase(
        index=i,
        patient=p,
        plane=plane,
        brain_plane=brain_plane,
        operator=operator,
        machine=machine,
        train=0 if p % 5 in (1, 3) else 1,
        scale=scale,
        center_x=float(rng.uniform(-0.12, 0.12) * d),
        center_z=float(rng.uniform(0.5, 0.62) * d),
        rotation_deg=float(rng.uniform(-180, 180)),
        variant=int(rng.integers(4)),
        geom=geom,
        acq=random_acquisition(rng),
        noise_seed=int(rng.integers(2**31)),
    )


class _Canvas:
    """Accumulates echogenicity, specular amplitude and absorption while shapes are painted in order."""

    def __init__(self, grid, rng: np.random.Generator, base: float) -> None:
        self.x, self.z, self.rng = grid.x, grid.z, rng
        self.d = np.broadcast_to(grid.depth, grid.shape)  # depth along the beam: layers follow the probe
        self.tex = np.exp(0.45 * smooth_field(rng, grid.shape, (9, 9))).astype(np.float32)
        self.echo = f32(base) * self.tex
        self.spec = np.zeros(grid.shape, dtype=np.float32)
        self.absorb = np.zeros(grid.shape, dtype=np.float32)

    def fill(self, mask: np.ndarray, value: float, textured: bool = True) -> None:
        self.echo = blend(self.echo, f32(value) * (self.tex if textured else f32(1)), mask)

    def bone(self, mask: np.ndarray, value: float = 15.0, absorb: float = 0.5, spec: float = 2.0) -> None:
        self.echo = blend(self.echo, f32(value), mask)
        self.spec += mask * f32(spec)
        self.absorb += mask * f32(absorb)

    def tissue(self) -> Tissue:
        return Tissue(echo=self.echo.astype(np.float32), specular=self.spec, absorb=self.absorb)


def _maternal_layers(cv: _Canvas, case: FetalCase, rng: np.random.Generator) -> None:
    """Skin, fat, muscle and myometrium under the probe, amniotic fluid below, sometimes a placenta."""
    z = cv.d
    wall = float(rng.uniform(12, 25))
    cv.fill(np.ones_like(z), FLUID)  # amniotic fluid everywhere first
    cv.fill(ramp(z - f32(wall), 2.0), 0.25)
    cv.fill(ramp(z - f32(wall * 0.35), 1.5), 0.08)
    cv.fill(ramp(z - f32(1.5), 0.8), 0.8)
    if rng.random() < 0.5:  # placenta along the anterior or a lateral wall
        side = rng.uniform(-1, 1)
        d = ellipse_sd(*rotate(cv.x, cv.z, side * 40, wall + 12, 90 + side * 30), 14, 45)
        cv.fill(ramp(d, 2.0), float(rng.uniform(0.12, 0.28)))


def _skull(cv: _Canvas, u, v, a: float, b: float, rng: np.random.Generator) -> None:
    d = ellipse_sd(u, v, a, b)
    cv.fill(ramp(d, 1.5), 0.09)  # brain
    t = float(rng.uniform(2.0, 3.5))
    cv.bone(np.minimum(ramp(d - f32(t), 1.0), ramp(-d, 1.0)), float(rng.uniform(8, 20)), 0.06, 1.2)


def _brain(cv: _Canvas, case: FetalCase, u, v, rng: np.random.Generator) -> None:
    s = case.scale
    a, b = 45 * s, 36 * s
    _skull(cv, u, v, a, b, rng)
    # falx along the long axis, interrupted by the cavum septi pellucidi a third of the way from the front
    falx = ramp(segment_distance(u, v, -0.9 * a, 0, 0.9 * a, 0) - f32(0.5), 0.8)
    csp = ramp(ellipse_sd(u + f32(0.4 * a), v, 0.12 * a, 0.07 * b), 1.0)
    cv.fill(falx * (1 - csp), 1.2, textured=False)
    if case.brain_plane == "Other":  # an oblique, non-standard cut: no landmarks past the midline
        return
    cv.fill(csp, 0.005)
    if case.brain_plane == "Trans-thalamic":
        for side in (-1, 1):
            th = ellipse_sd(*rotate(u, v, -0.02 * a, side * 0.16 * b, 90 + side * 25), 0.12 * a, 0.2 * b)
            cv.fill(ramp(th, 1.5), 0.012)
    elif case.brain_plane == "Trans-ventricular":
        for side in (-1, 1):
            ven = ellipse_sd(*rotate(u, v, 0.25 * a, side * 0.3 * b, 0), 0.35 * a, 0.08 * b)
            cv.fill(ramp(ven, 1.0), 0.005)
            plex = ellipse_sd(*rotate(u, v, 0.35 * a, side * 0.3 * b, 0), 0.15 * a, 0.05 * b)
            cv.fill(ramp(plex, 1.0), 1.5)
    else:  # trans-cerebellar: two hemispheres and the cisterna magna at the back
        for side in (-1, 1):
            cb = ellipse_sd(u - f32(0.55 * a), v - f32(side * 0.16 * b), 0.14 * a, 0.16 * b)
            cv.fill(ramp(cb, 1.0), 0.15)
            cv.fill(np.minimum(ramp(cb - f32(1.0), 0.8), ramp(-cb, 0.8)), 0.8)
        cv.fill(ramp(ellipse_sd(u - f32(0.78 * a), v, 0.08 * a, 0.2 * b), 1.0), 0.004)


def _spine_cross(cv: _Canvas, u, v, r: float, rng: np.random.Generator) -> None:
    """Three ossification centres in a triangle at the posterior edge of a round section."""
    for du, dv in ((0.78, -0.1), (0.78, 0.1), (0.9, 0.0)):
        d = np.sqrt((u - f32(du * r)) ** 2 + (v - f32(dv * r)) ** 2) - f32(0.07 * r)
        cv.bone(ramp(d, 0.8), float(rng.uniform(10, 25)), 0.4, 2.0)


def _abdomen(cv: _Canvas, case: FetalCase, u, v, rng: np.random.Generator) -> None:
    r = 38 * case.scale
    d = ellipse_sd(u, v, r * 1.03, r)
    cv.fill(ramp(d, 1.5), 0.2)
    cv.fill(np.minimum(ramp(d - f32(1.2), 0.8), ramp(-d, 0.8)), 0.7)  # skin line
    cv.fill(ramp(ellipse_sd(u + f32(0.1 * r), v - f32(0.35 * r), 0.22 * r, 0.16 * r), 1.0), 0.004)  # stomach
    uv = ramp(segment_distance(u, v, -0.7 * r, 0.05 * r, -0.15 * r, -0.15 * r) - f32(0.05 * r), 0.8)
    cv.fill(uv, 0.01)  # umbilical vein
    _spine_cross(cv, u, v, r, rng)
    for side in (-1, 1):  # short rib echoes at the flanks
        ang = np.deg2rad(side * 70 + 180)
        cu, cvv = 0.95 * r * math.cos(ang), 0.95 * r * math.sin(ang)
        cv.bone(ramp(segment_distance(u, v, cu - 2, cvv, cu + 2, cvv) - f32(0.8), 0.8), 8.0, 0.3, 1.5)


def _thorax(cv: _Canvas, case: FetalCase, u, v, rng: np.random.Generator) -> None:
    r = 35 * case.scale
    d = ellipse_sd(u, v, r, r)
    cv.fill(ramp(d, 1.5), 0.35)  # lungs
    cv.fill(np.minimum(ramp(d - f32(1.2), 0.8), ramp(-d, 0.8)), 0.7)
    for k in range(7):  # ribs around the perimeter
        ang = math.radians(-150 + k * 50 + rng.uniform(-8, 8))
        cu, cvv = 0.93 * r * math.cos(ang), 0.93 * r * math.sin(ang)
        tu, tv = -math.sin(ang) * 0.1 * r, math.cos(ang) * 0.1 * r
        cv.bone(
            ramp(segment_distance(u, v, cu - tu, cvv - tv, cu + tu, cvv + tv) - f32(1.0), 0.8),
            12.0,
            0.35,
            1.8,
        )
    # four-chamber heart, apex pointing anterior-left
    hu, hv = -0.15 * r, -0.15 * r
    hd = ellipse_sd(*rotate(u, v, hu, hv, 45), 0.42 * r, 0.36 * r)
    cv.fill(ramp(hd, 1.0), 0.5)
    cu, cvr = rotate(u, v, hu, hv, 45)
    for su in (-1, 1):
        for sv in (-1, 1):
            ch = ellipse_sd(cu - f32(su * 0.17 * r), cvr - f32(sv * 0.15 * r), 0.15 * r, 0.12 * r)
            cv.fill(ramp(ch, 1.0), 0.005)
    _spine_cross(cv, u, v, r, rng)


def _femur(cv: _Canvas, case: FetalCase, u, v, rng: np.random.Generator) -> None:
    length = 55 * case.scale * rng.uniform(0.85, 1.1)
    thigh = ellipse_sd(u, v, 0.75 * length, 0.22 * length)
    cv.fill(ramp(thigh, 2.0), 0.2)
    bone = ramp(segment_distance(u, v, -length / 2, 0, length / 2, 0) - f32(1.3), 0.8)
    cv.bone(bone, float(rng.uniform(15, 30)), 0.8, 3.0)
    if rng.random() < 0.5:  # the other leg, out of plane: a faint section nearby
        cv.fill(
            ramp(ellipse_sd(u - f32(0.2 * length), v - f32(0.45 * length), 0.5 * length, 0.15 * length), 2.0),
            0.15,
        )


def _cervix(cv: _Canvas, case: FetalCase, rng: np.random.Generator) -> None:
    x, z = cv.x, cv.z
    cv.echo = f32(0.05) * cv.tex
    length = float(rng.uniform(25, 45))
    ang = float(rng.uniform(60, 120))
    cx, cz = case.center_x * 0.5, float(case.geom.depth_mm * rng.uniform(0.35, 0.55))
    u, v = rotate(x, z, cx, cz, ang)
    d = ellipse_sd(u, v, length / 2 + 5, float(rng.uniform(9, 14)))
    cv.fill(ramp(d, 2.0), 0.3)  # cervical stroma
    mucosa = ramp(np.abs(v) - f32(2.5), 1.0) * ramp(np.abs(u) - f32(length / 2), 1.0)
    cv.fill(mucosa, 0.04)  # hypoechoic glandular zone around the canal
    canal = ramp(segment_distance(u, v, -length / 2, 0, length / 2, 0) - f32(0.7), 0.8)
    cv.fill(canal, 2.5)
    cv.spec += canal * f32(0.8)
    if rng.random() < 0.6:  # bladder anteriorly
        cv.fill(ramp(ellipse_sd(*rotate(x, z, cx - 30, cz - 18, ang), 18, 10), 1.5), 0.003)
    if rng.random() < 0.5:  # amniotic fluid and a presenting part beyond the internal os
        b = ellipse_sd(*rotate(x, z, cx + 35, cz + 20, ang), 25, 25)
        cv.fill(ramp(b, 2.0), FLUID)


def _other(cv: _Canvas, case: FetalCase, u, v, rng: np.random.Generator) -> None:
    s = case.scale
    if case.variant == 0:  # sagittal spine: two rows of vertebral echoes inside the back's soft tissue
        cv.fill(ramp(ellipse_sd(u, v, 60 * s, 14 * s), 2.0), 0.22)
        for k in range(14):
            pu = (-52 + k * 8) * s
            for row in (-4.5, 4.5):
                d = np.sqrt((u - f32(pu)) ** 2 + (v - f32(row * s)) ** 2) - f32(1.6 * s)
                cv.bone(ramp(d, 0.8), 12.0, 0.35, 1.5)
    elif case.variant == 1:  # kidney: oval cortex, dark pelvis
        cv.fill(ramp(ellipse_sd(u, v, 45 * s, 35 * s), 2.0), 0.18)
        cv.fill(ramp(ellipse_sd(u, v, 20 * s, 11 * s), 1.5), 0.35)
        cv.fill(ramp(ellipse_sd(u, v, 7 * s, 4 * s), 1.0), 0.004)
    elif case.variant == 2:  # hand: short parallel bones
        cv.fill(ramp(ellipse_sd(u, v, 30 * s, 22 * s), 2.0), 0.2)
        for k in range(4):
            pv = (-9 + 6 * k) * s
            bone = ramp(segment_distance(u, v, -12 * s, pv, (6 + 2 * k) * s, pv * 1.2) - f32(0.9), 0.8)
            cv.bone(bone, 10.0, 0.3, 1.2)
    else:  # an unrecognisable oblique section: a few soft-tissue blobs
        for _ in range(int(rng.integers(2, 5))):
            d = ellipse_sd(
                *rotate(u, v, rng.uniform(-30, 30) * s, rng.uniform(-25, 25) * s, rng.uniform(0, 180)),
                rng.uniform(8, 25) * s,
                rng.uniform(6, 18) * s,
            )
            cv.fill(ramp(d, 2.0), float(rng.uniform(0.05, 0.4)))


def fetal_tissue(case: FetalCase, grid, rng: np.random.Generator) -> Tissue:
    cv = _Canvas(grid, rng, FLUID)
    if case.plane == "Maternal cervix":
        _cervix(cv, case, rng)
        return cv.tissue()
    _maternal_layers(cv, case, rng)
    u, v = rotate(cv.x, cv.z, case.center_x, case.center_z, case.rotation_deg)
    painter = {
        "Fetal brain": _brain,
        "Fetal abdomen": _abdomen,
        "Fetal thorax": _thorax,
        "Fetal femur": _femur,
        "Other": _other,
    }[case.plane]
    painter(cv, case, u, v, rng)
    return cv.tissue()


def render_fetal(case: FetalCase, size: int = 160) -> np.ndarray:
    rng = np.random.default_rng(case.noise_seed)
    renderer = BModeRenderer(case.geom, case.acq, size)
    tissue = fetal_tissue(case, renderer.grid, rng)
    return renderer.frame(tissue, renderer.new_scatter(rng), rng)


def make_fetal_dataset(
    out: str | Path, n: int = 36, seed: int = 0, size: int = 160, overwrite: bool = False
) -> Path:
    """Write `n` grayscale images and FETAL_PLANES_DB_data.csv (";"-separated), IMAGES_PER_PATIENT per patient."""
    import pandas as pd

    from sonokit.io import write_image

    check_args(n, size, seed)
    with atomic_dir(out, overwrite) as tmp:
        rows = []
        for i in progress(range(int(n)), desc="synth fetal", total=int(n), unit="image"):
            case = sample_fetal_case(seed, i)
            write_image(tmp / "Images" / f"{case.name}.png", render_fetal(case, size))
            rows.append(
                {
                    "Image_name": case.name,
                    "Patient_num": case.patient,
                    "Plane": case.plane,
                    "Brain_plane": case.brain_plane,
                    "Operator": case.operator,
                    "US_Machine": case.machine,
                    "Train": case.train,
                }
            )
        write_csv(pd.DataFrame(rows), tmp / "FETAL_PLANES_DB_data.csv", sep=";")
    log.info("wrote %d simulated fetal-plane images to %s", n, out)
    return Path(out)
