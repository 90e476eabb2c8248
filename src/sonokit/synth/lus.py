"""Lung ultrasound cines scored 0-3, with the ground-truth fraction of B-line pixels.

Lung artefacts live in beam space, so this phantom paints on (depth along the beam, position along the
pleura) rather than on (x, z): A-lines are reverberations of the pleura at multiples of its depth, B-lines
are bright beams from the pleura to the bottom of the screen that erase the A-lines, ribs shadow whole beams.
Scores follow the usual convention:

0: regular pleural line with A-lines (at most one thin B-line);
1: indented, irregular pleura with sparse separate B-lines;
2: broken pleura with small subpleural consolidations and confluent B-lines;
3: white lung (B-lines fused across the field), often with larger consolidations.

Scores 1 and 2 overlap in B-line coverage at the margin, as they do in practice. The lung slides under the
chest wall with breathing, carrying the pleura, B-lines and consolidations with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonokit.synth.bmode import Acquisition, BModeRenderer, Tissue, ar1_step, random_acquisition
from sonokit.synth.scan import ProbeGeometry, image_frame
from sonokit.synth.shapes import blend, ramp, smooth_field
from sonokit.synth.writer import atomic_dir, case_rng, check_args
from sonokit.utils import get_logger, progress, write_csv

KIND_ID = 3
VIDEOS_PER_PATIENT = 3
log = get_logger(__name__)


@dataclass(frozen=True)
class LusCase:
    index: int
    patient: int
    score: int
    geom: ProbeGeometry
    acq: Acquisition
    n_frames: int
    fps: float
    pleura_mm: float
    fat_mm: float
    irregularity_mm: float
    pleura_echo: float
    pleura_gaps: tuple[tuple[float, float], ...]  # (centre, half-width) along the pleura, mm
    blines: tuple[tuple[float, float, float], ...]  # (centre, half-width sigma, brightness)
    consolidations: tuple[tuple[float, float, float], ...]  # (centre, half-width, depth) mm
    ribs: tuple[float, ...]  # rib centres along the skin, mm
    a_line_echo: float
    slide_mm: float
    breath_s: float
    noise_seed: int

    @property
    def name(self) -> str:
        return f"lus_{self.index:05d}"


def _lateral_span(geom: ProbeGeometry, pleura_mm: float) -> float:
    """Half-length (mm) of the pleura visible across the image."""
    if geom.kind == "linear":
        return geom.width_mm / 2
    return math.radians(geom.angle_deg / 2) * (geom.radius_mm + pleura_mm)


def sample_lus_case(seed: int, i: int) -> LusCase:
    patient = i // VIDEOS_PER_PATIENT
    severity = case_rng(seed, KIND_ID, patient, stream=1).uniform(0.0, 4.0)
    rng = case_rng(seed, KIND_ID, i, stream=2)
    score = int(np.clip(math.floor(severity + rng.normal(0, 0.6)), 0, 3))
    if rng.random() < 0.5:
        geom = ProbeGeometry(
            kind="linear", depth_mm=float(rng.uniform(45, 80)), width_mm=float(rng.uniform(38, 50))
        )
    else:
        geom = ProbeGeometry(
            kind="convex",
            depth_mm=float(rng.uniform(70, 130)),
            angle_deg=float(rng.uniform(55, 75)),
            radius_mm=float(rng.uniform(40, 60)),
            zoom=float(rng.uniform(1.0, 1.15)),
        )
    pleura = float(rng.uniform(12, 24) if geom.kind == "linear" else rng.uniform(15, 30))
    half = _lateral_span(geom, pleura)
    # B-lines: count, width and brightness grow with the score; white lung fuses them across the field
    blines: list[tuple[float, float, float]] = []
    if score == 0:
        n_b = 1 if rng.random() < 0.25 else 0
        widths = (0.5, 0.9)
    elif score == 1:
        n_b, widths = int(rng.integers(1, 5)), (0.6, 1.6)
    elif score == 2:
        n_b, widths = int(rng.integers(3, 7)), (1.2, 3.2)
    else:
        n_b, widths = int(rng.integers(7, 12)), (2.5, 5.5)
    for _ in range(n_b):
        c = float(rng.uniform(-0.85, 0.85) * half)
        blines.append((c, float(rng.uniform(*widths) * half / 22.0), float(rng.uniform(0.6, 1.6))))
    if score == 3:  # evenly spread so the lung really whitens
        blines = [
            (float((-0.95 + 1.9 * (k + rng.uniform(0.2, 0.8)) / n_b) * half), w, b)
            for k, (_, w, b) in enumerate(blines)
        ]
    gaps: list[tuple[float, float]] = []
    cons: list[tuple[float, float, float]] = []
    if score >= 2:
        for _ in range(int(rng.integers(1, 4))):
            gaps.append((float(rng.uniform(-0.8, 0.8) * half), float(rng.uniform(1.5, 4.0))))
        if rng.random() < (0.65 if score == 2 else 0.6):
            big = score == 3
            cons.append(
                (
                    float(rng.uniform(-0.6, 0.6) * half),
                    float(rng.uniform(6, 18) if big else rng.uniform(3, 8)),
                    float(rng.uniform(12, 30) if big else rng.uniform(4, 10)),
                )
            )
    ribs: list[float] = []
    for side in (-1, 1):
        if rng.random() < 0.6:
            ribs.append(float(side * half * rng.uniform(0.8, 1.1)))
    return LusCase(
        index=i,
        patient=patient,
        score=score,
        geom=geom,
        acq=random_acquisition(rng),
        n_frames=int(rng.integers(12, 21)),
        fps=float(round(rng.uniform(15, 30), 2)),
        pleura_mm=pleura,
        fat_mm=float(rng.uniform(2.5, 0.45 * pleura)),
        irregularity_mm=float([0.0, 0.45, 0.8, 0.9][score] * rng.uniform(0.6, 1.4)),
        pleura_echo=float(rng.uniform(4, 12) * [1.0, 0.75, 0.55, 0.45][score]),
        pleura_gaps=tuple(gaps),
        blines=tuple(blines),
        consolidations=tuple(cons),
        ribs=tuple(ribs),
        a_line_echo=float(rng.uniform(0.6, 1.0) * [1.0, 0.45, 0.2, 0.05][score]),
        slide_mm=float(rng.uniform(0.6, 2.0) * (1.0 if score < 3 else 0.3)),
        breath_s=float(rng.uniform(2.5, 5.0)),
        noise_seed=int(rng.integers(2**31)),
    )


class LusPhantom:
    def __init__(self, case: LusCase, grid, rng: np.random.Generator) -> None:
        self.case, self.grid = case, grid
        g = case.geom
        self.d = np.broadcast_to(grid.depth, grid.shape).astype(np.float32)
        if g.kind == "linear":
            self.l_skin = np.broadcast_to(grid.lateral, grid.shape).astype(np.float32)
            self.l_pl = self.l_skin
        else:
            th = np.broadcast_to(grid.theta, grid.shape).astype(np.float32)
            self.l_skin = th * np.float32(g.radius_mm)
            self.l_pl = th * np.float32(g.radius_mm + case.pleura_mm)
        shape = grid.shape
        self.tex = np.exp(0.4 * smooth_field(rng, shape, (8, 6))).astype(np.float32)
        # irregular pleura: a smooth random profile across the beams
        half = _lateral_span(case.geom, case.pleura_mm) + 3 * case.slide_mm + 5
        self.profile_at = np.linspace(-half, half, shape[1] * 2)
        rough = (
            smooth_field(rng, (1, shape[1] * 2), (1, 40))[0]
            + 0.5 * smooth_field(rng, (1, shape[1] * 2), (1, 8))[0]
        )
        self.pleura_profile = rough / rough.std()
        self.striae = (
            0.6 + 0.4 * np.sin(self.d * np.float32(rng.uniform(1.2, 2.2)) + np.float32(rng.uniform(0, 6)))
        ).astype(np.float32)
        self.haze = float(10 ** rng.uniform(-2.8, -2.2))
        self.bronchograms = rng.random(shape).astype(np.float32) > 0.93
        self.rng = rng

    def tissue(self, t: float) -> tuple[Tissue, np.ndarray, np.ndarray]:
        """Tissue at time t (s), the B-line mask and the lung mask (below the pleura), in beam space."""
        case, d, f32 = self.case, self.d, np.float32
        shift = f32(case.slide_mm * math.sin(2 * math.pi * t / case.breath_s))
        lp = self.l_pl - shift  # position along the pleura in lung coordinates (it slides)
        prof = np.interp(lp[0], self.profile_at, self.pleura_profile).astype(np.float32)
        d_pl = f32(case.pleura_mm) + f32(case.irregularity_mm) * prof[None, :]
        below = d - d_pl  # mm under the pleura
        lung = ramp(-below, 1.0)
        echo = f32(0.25) * self.tex  # muscle
        echo = echo * self.striae
        fat = np.minimum(ramp(f32(1.5) - d, 0.8), ramp(d - f32(case.fat_mm), 1.0))
        echo = blend(echo, f32(0.05) * self.tex, fat)
        echo = blend(echo, f32(0.9), ramp(d - f32(1.2), 0.6))  # skin
        # aerated lung: faint haze
        echo = blend(echo, f32(self.haze) * self.tex, lung)
        # pleural line, broken over gaps
        pl = ramp(np.abs(below) - f32(0.6 + 0.3 * case.irregularity_mm), 0.8)
        gap = np.zeros_like(d)
        for c, w in case.pleura_gaps:
            gap = np.maximum(gap, ramp(np.abs(lp - f32(c)) - f32(w), 1.0))
        pleura = pl * (1 - 0.85 * gap)
        # B-lines: laser-like, from the pleura to the bottom, erase A-lines
        bl_row = np.zeros(d.shape[1], dtype=np.float32)
        bcore = np.zeros(d.shape[1], dtype=bool)
        for c, w, b in case.blines:
            g = np.exp(-0.5 * ((lp[0] - f32(c)) / f32(w)) ** 2)
            bl_row = np.maximum(bl_row, g * f32(b))
            bcore |= g >= 0.5  # full width at half maximum: the B-line's pixels
        bl = np.broadcast_to(bl_row[None, :], d.shape)
        bl_depth = ramp(-(below - f32(0.5)), 1.0)
        b_echo = bl * bl_depth
        # A-lines: reverberations at multiples of the pleural depth
        alines = np.zeros_like(d)
        for k in (2, 3, 4):  # echoes of the mean pleural depth: an irregular pleura blurs them away
            alines += ramp(np.abs(d - f32(k * case.pleura_mm)) - f32(0.7), 0.8) * f32(
                case.a_line_echo * 0.55 ** (k - 2)
            )
        alines *= (1 - np.minimum(bl, 1)) * (1 - gap)
        echo = echo + alines * f32(3.0) + b_echo * f32(1.1)
        # consolidations: tissue-like lung with air bronchograms and a shredded deep border
        for c, w, depth in case.consolidations:
            u = (lp - f32(c)) / f32(w)
            dd = below / f32(depth)
            inside = (u * u + (dd - 0.5) ** 2 * 4) < 1
            cm = inside.astype(np.float32)
            echo = blend(echo, f32(0.3) * self.tex, cm)
            echo = echo + cm * self.bronchograms * f32(3.0)
            pleura = pleura * (1 - 0.6 * cm)
        echo = echo + pleura * f32(case.pleura_echo)
        spec = pleura * f32(math.sqrt(case.pleura_echo) * 0.8)
        # ribs: bright curved surface above the pleura with a full acoustic shadow below
        absorb = np.zeros_like(d)
        for c in case.ribs:
            r = 6.5
            dx = self.l_pl - f32(c)
            top = f32(case.pleura_mm - 1.5) - np.sqrt(np.clip(f32(r * r) - dx * dx, 0, None)) * f32(0.45)
            on = np.abs(dx) < f32(r)
            surf = ramp(np.abs(d - top) - f32(0.9), 0.8) * on
            echo = echo + surf * f32(6.0)
            spec += surf * f32(2.0)
            absorb += surf * f32(1.2)
        bmask = bcore[None, :] & (below > 0)
        return Tissue(echo=echo.astype(np.float32), specular=spec, absorb=absorb), bmask, below > 0


def render_lus(case: LusCase, size: int = 128) -> tuple[np.ndarray, float]:
    """(frames (F, S, S) uint8, ground-truth B-line fraction of the visible lung averaged over frames)."""
    rng = np.random.default_rng(case.noise_seed)
    renderer = BModeRenderer(case.geom, case.acq, size)
    phantom = LusPhantom(case, renderer.grid, rng)
    wall = renderer.new_scatter(rng)
    lung = renderer.new_scatter(rng)
    pool = renderer.noise_pool(rng)
    frames = np.empty((case.n_frames, size, size), dtype=np.uint8)
    fractions = []
    for t in range(case.n_frames):
        if t:
            wall = ar1_step(wall, rng, 0.95, pool)
            lung = ar1_step(lung, rng, 0.55, pool)  # the lung surface shimmers
        tissue, bmask, lmask = phantom.tissue(t / case.fps)
        scatter = np.where(lmask[..., None], lung, wall)
        frames[t] = renderer.frame(tissue, scatter, rng, pool)
        b_img = renderer.mask_to_image(bmask)
        l_img = renderer.mask_to_image(lmask)
        fractions.append(b_img.sum() / max(int(l_img.sum()), 1))
    return frames, float(np.mean(fractions))


def make_lus_dataset(
    out: str | Path, n: int = 24, seed: int = 0, size: int = 128, overwrite: bool = False
) -> Path:
    """Write `n` lung cines (VIDEOS_PER_PATIENT per patient) and lus.csv (path, label, group, b_line_fraction)."""
    import pandas as pd

    from sonokit.io import write_video

    check_args(n, size, seed)
    with atomic_dir(out, overwrite) as tmp:
        rows, metas = [], []
        for i in progress(range(int(n)), desc="synth lus", total=int(n), unit="video"):
            case = sample_lus_case(seed, i)
            frames, frac = render_lus(case, size)
            rel = f"videos/{case.name}.avi"
            write_video(tmp / rel, frames, fps=case.fps)
            rows.append(
                {
                    "path": rel,
                    "label": case.score,
                    "group": f"p{case.patient:05d}",
                    "b_line_fraction": round(frac, 5),
                }
            )
            metas.append(
                {
                    "path": rel,
                    "probe": case.geom.kind,
                    "n_blines": len(case.blines),
                    "consolidations": len(case.consolidations),
                    "fps": case.fps,
                    "mm_per_px": round(image_frame(case.geom, size).mm_per_px, 6),
                }
            )
        write_csv(pd.DataFrame(metas), tmp / "synth_meta.csv")
        write_csv(pd.DataFrame(rows), tmp / "lus.csv")
    log.info("wrote %d simulated lung cines to %s", n, out)
    return Path(out)
