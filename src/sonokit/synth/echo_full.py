"""The "full" look of the simulated apical-4-chamber cine: anatomy and appearance closer to real scanners.

`fuller_case` adds per-case choices to a basic `EchoCase` (from the case's second random stream, so a case's EF,
rhythm and chamber sizes do not change with the look): LV outline (bullet/ellipse blend with smooth bumps per
side, sometimes foreshortened), frame rate, rotation about the probe, sector, depth, zoom, a scanner with a TGC
curve, fan-edge fall-off and a speckle size of its own, and an `EchoLook` of tissue brightnesses and artefacts.

`FullEchoPhantom` paints it. The LV's signed distance comes from a look-up table of the end-diastolic outline
(0.25 mm cells) sampled at coordinates scaled along and across the LV axis, so the drawn cavity is exactly the
outline the tracings are cut from, at every contraction state. Papillary muscles and trabeculae live in the same
table, inside the traced cavity (the ASE convention traces around them), and move with the wall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from sonokit.synth.bmode import Tissue, random_acquisition
from sonokit.synth.echo import EchoCase, LVShape, lv_sides, lv_state
from sonokit.synth.scan import ProbeGeometry, beam_index
from sonokit.synth.shapes import (
    band,
    blend,
    ellipse_sd,
    from_local,
    ramp,
    rotate,
    segment_distance,
    smooth_field,
)

_F = np.float32
LUT_MM = 0.25  # cell size of the LV outline table
LUT_PAD = 26.0  # mm around the ED outline covered by the table (walls, pericardium, motion weights)


@dataclass(frozen=True)
class EchoLook:
    """Per-case tissue brightnesses (echogenicity, 1 = bright tissue) and artefacts of the full phantom."""

    bg_echo: float  # lung / mediastinum around the heart: near black
    fat_echo: float  # epicardial fat hugging the pericardium
    chest_mm: float  # chest wall under the probe
    chest_echo: float
    reverb: float  # reverberation ghosts of the chest wall, relative to it
    haze: float  # near-field clutter over the apex
    haze_mm: float
    myo_echo: float
    septum_gain: float
    lateral_dropout: float  # 0 none .. 0.9 lateral wall mostly gone
    aspect: float  # how much weaker walls along the beam are than walls facing it (0 .. 1)
    rv_wall_mm: float
    peri_echo: float
    blood_echo: float
    valve_echo: float
    trabeculation: float  # share of the endocardial band with bright trabeculae
    papillary: tuple[
        tuple[float, float, float, float], ...
    ]  # (t along LV, inset mm, half-length mm, radius mm)
    moderator: bool
    aorta: bool
    rib: tuple[float, float, float] | None  # (beam position -1..1, width as a fraction, total nepers)
    lung: float  # share of the fan on the lateral side behind lung (0: none)
    rv_bumps: tuple[float, ...]
    la_bumps: tuple[float, ...]
    ra_bumps: tuple[float, ...]


def _bumps(rng: np.random.Generator, n: int, scale: float) -> tuple[float, ...]:
    return tuple(float(rng.normal(0, scale / (k // 2 + 1))) for k in range(2 * n))


def fuller_case(
    case: EchoCase,
    rng: np.random.Generator,
    size: int,
    fps_range: tuple[float, float] = (20.0, 90.0),
    max_rotation_deg: float = 5.0,
) -> EchoCase:
    """The per-case choices of the full look on top of a basic case (which stays the source of EF and sizes)."""
    lo, hi = (float(v) for v in fps_range)
    fps = float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo
    hr = case.hr_bpm
    n_frames = max(64, int(math.ceil(2.15 * fps * 60.0 / hr)))
    if n_frames > 128:  # keep clips short: slow hearts at high frame rates get fewer frames per second
        fps = max(lo, 128 / 2.15 * hr / 60.0)
        n_frames = max(64, int(math.ceil(2.15 * fps * 60.0 / hr - 1e-9)))
    bullet = float(rng.uniform(0.2, 1.0)) if rng.random() < 0.75 else 0.0
    shape = LVShape(
        kappa=case.kappa,
        bullet=bullet,
        shoulder=float(rng.uniform(0.4, 0.6)),
        taper=float(rng.uniform(0.1, 0.35)),
        septal=tuple(float(rng.normal(0, 0.035 / k)) for k in range(1, 5)),
        lateral=tuple(float(rng.normal(0, 0.07 / k)) for k in range(1, 5)),
    )
    foreshortened = bool(rng.random() < 0.25)
    length = case.lv_length_mm
    if foreshortened:  # the plane misses the true apex: shorter, rounder LV
        length *= float(rng.uniform(0.8, 0.92))
        shape = replace(shape, bullet=max(shape.bullet, 0.6), shoulder=float(rng.uniform(0.3, 0.4)))
    rot = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
    base_z = case.apex_z + length * math.cos(math.radians(case.tilt_deg))
    depth = float(np.clip(base_z + 2 * case.la_a * rng.uniform(0.55, 1.0) + rng.uniform(0, 40), 110.0, 220.0))
    geom = ProbeGeometry(
        kind="sector",
        depth_mm=depth,
        angle_deg=float(rng.uniform(60.0, 90.0)),
        zoom=float(rng.uniform(1.0, 1.45)),
    )
    # the operator sets gain so that blood sits at the black level whatever the dynamic range: myocardium comes
    # out mid-grey, the pericardium bright (BModeRenderer: black level = 12 - gain - dynamic range, in dB)
    dyn = float(rng.uniform(40.0, 62.0))
    black_db = float(rng.uniform(-37.0, -27.0))
    acq = random_acquisition(
        rng,
        gain_db=12.0 - (black_db + dyn),
        dynamic_range_db=dyn,
        noise_db=float(rng.uniform(-82.0, -64.0)),
        gamma=float(rng.uniform(0.8, 1.3)),
        power_blur=float(rng.uniform(0.0, 0.8)),
        axial_sigma=float(rng.uniform(0.6, 1.4)),  # speckle size drawn per case
        lateral_sigma=float(rng.uniform(0.8, 1.8)),
        tgc_nodes_db=tuple(float(v) for v in rng.normal(0.0, 2.5, 6)),
        edge_db=float(rng.uniform(0.0, 9.0)),
    )
    n_pap = int(rng.integers(0, 3))
    papillary = tuple(
        (
            float(rng.uniform(0.42, 0.7)),
            float(rng.uniform(1.5, 3.5)),
            float(rng.uniform(4.0, 8.0)),
            float(rng.uniform(1.8, 3.2)),
        )
        for _ in range(n_pap)
    )
    look = EchoLook(
        bg_echo=float(10 ** rng.uniform(-3.9, -3.0)),
        fat_echo=float(10 ** rng.uniform(-2.8, -2.0)),
        chest_mm=float(rng.uniform(6.0, 16.0)),
        chest_echo=float(rng.uniform(0.3, 1.2)),
        reverb=float(rng.uniform(0.0, 0.12)),
        haze=float(10 ** rng.uniform(-2.6, -1.4)),
        haze_mm=float(rng.uniform(8.0, 25.0)),
        myo_echo=float(rng.uniform(0.08, 0.3)),
        septum_gain=float(rng.uniform(1.3, 2.5)),
        lateral_dropout=float(rng.uniform(0.0, 0.85)),
        aspect=float(rng.uniform(0.3, 0.7)),
        rv_wall_mm=float(rng.uniform(3.0, 5.0)),
        peri_echo=float(rng.uniform(1.0, 5.0)),
        blood_echo=float(10 ** rng.uniform(-4.3, -3.4)),
        valve_echo=float(rng.uniform(0.25, 1.0)),
        trabeculation=float(rng.uniform(0.0, 0.35)),
        papillary=papillary,
        moderator=bool(rng.random() < 0.5),
        aorta=bool(rng.random() < 0.5),
        rib=(
            (
                float(rng.choice([-1, 1]) * rng.uniform(0.55, 0.9)),
                float(rng.uniform(0.06, 0.14)),
                float(rng.uniform(0.8, 2.5)),
            )
            if rng.random() < 0.3
            else None
        ),  # fmt: skip
        lung=float(rng.uniform(0.04, 0.14)) if rng.random() < 0.3 else 0.0,
        rv_bumps=_bumps(rng, 3, 0.08),
        la_bumps=_bumps(rng, 3, 0.1),
        ra_bumps=_bumps(rng, 3, 0.1),
    )
    from sonokit.synth.echo import rotate_case

    out = replace(
        case,
        realism="full",
        fps=round(fps, 2),
        n_frames=n_frames,
        lv_length_mm=float(length),
        shape=shape,
        foreshortened=foreshortened,
        geom=geom,
        acq=acq,
        look=look,
        myo_echo=look.myo_echo,
        blood_echo=look.blood_echo,
        bg_echo=look.bg_echo,
        peri_echo=look.peri_echo,
        clutter=look.haze,
    )
    return rotate_case(out, rot)


def _bumped(d: np.ndarray, du: np.ndarray, dv: np.ndarray, a: float, b: float, coefs) -> np.ndarray:
    """Signed distance of an ellipse whose radius wobbles with the polar angle (a few Fourier modes, from 2).

    cos(k phi), sin(k phi) by repeated complex multiplication of the unit vector: no trigonometry per sample.
    """
    if not coefs:
        return d
    x, y = du * _F(1 / a), dv * _F(1 / b)
    inv = _F(1) / (np.sqrt(x * x + y * y) + _F(1e-6))
    c1, s1 = x * inv, y * inv
    ck, sk = c1 * c1 - s1 * s1, _F(2) * c1 * s1
    wob = np.zeros_like(d)
    for k in range(len(coefs) // 2):
        if k:
            ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        wob += _F(coefs[2 * k]) * ck + _F(coefs[2 * k + 1]) * sk
    return d - wob * _F(min(a, b))


class FullEchoPhantom:
    """Echogenicity of the full four-chamber view on a beam grid at a contraction state (see the module doc)."""

    def __init__(self, case: EchoCase, grid, rng: np.random.Generator) -> None:
        import cv2

        self.case, self.grid, self.look = case, grid, case.look
        look = case.look
        shape = grid.shape
        self.u, self.v = rotate(grid.x, grid.z, case.apex_x, case.apex_z, case.tilt_deg)
        self.st0 = lv_state(case, 0.0)
        # --- LV outline table at ED: signed distance (mm) and the bright inner structures
        L0 = self.st0.length
        tt = np.linspace(0.0, 1.0, 160)
        tt = 0.5 - 0.5 * np.cos(np.pi * tt)  # denser at the apex
        rs, rl = lv_sides(case, self.st0, tt * L0)
        vmax = float(max(rs.max(), rl.max())) + LUT_PAD
        self.u_min, self.v_min = -LUT_PAD, -vmax
        n_rows = int(math.ceil((L0 + 2 * LUT_PAD) / LUT_MM)) + 1
        n_cols = int(math.ceil(2 * vmax / LUT_MM)) + 1
        poly_u = np.concatenate([tt * L0, (tt * L0)[::-1]])
        poly_v = np.concatenate([-rs, rl[::-1]])
        pts = np.stack([(poly_v - self.v_min) / LUT_MM, (poly_u - self.u_min) / LUT_MM], axis=1)
        mask = np.zeros((n_rows, n_cols), np.uint8)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        d_in = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        d_out = cv2.distanceTransform(1 - mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        sd = np.where(mask > 0, -(d_in - 0.5), d_out - 0.5).astype(np.float32) * _F(LUT_MM)
        inner = self._inner(sd, rng, L0, rl)
        self.lut = np.ascontiguousarray(np.stack([sd, inner], axis=-1))
        # --- textures and static artefacts (beam space)
        self.tex_myo = np.exp(0.7 * smooth_field(rng, shape, (12, 10))).astype(np.float32)
        self.tex_bg = np.exp(1.1 * smooth_field(rng, shape, (6, 5))).astype(np.float32)
        self.tex_chest = np.exp(0.7 * smooth_field(rng, shape, (14, 3))).astype(np.float32)
        self.tex_haze = np.exp(0.6 * smooth_field(rng, shape, (5, 8))).astype(np.float32)
        wobble = np.clip(0.5 + 0.5 * smooth_field(rng, shape, (6, 4)), 0, 1)
        self.lateral_gain = (1 - look.lateral_dropout * wobble).astype(np.float32)
        self.patchy = np.clip(0.6 + 0.4 * smooth_field(rng, shape, (16, 18)), 0.15, 1.3).astype(np.float32)
        self.peri_gain = (0.35 + 0.65 * np.clip(0.5 + 0.5 * smooth_field(rng, shape, (4, 4)), 0, 1)).astype(
            np.float32
        )
        self.ias_dropout = bool(rng.random() < 0.5)
        self.leaflet = float(rng.uniform(0.7, 0.95))
        self.absorb = self._absorb(shape)
        z = grid.z
        chest = _F(look.chest_mm)
        self.chest = ramp(z - chest, 3.0)
        ghost = sum(np.exp(-(((z - k * chest) / (0.18 * chest)) ** 2)) / k for k in (2, 3))
        self.near = (
            np.float32(look.chest_echo) * self.chest * self.tex_chest
            + np.float32(look.chest_echo * look.reverb) * ghost * self.tex_chest
            + np.float32(look.haze) * np.exp(-np.maximum(z - chest, 0) / _F(look.haze_mm)) * self.tex_haze
        ).astype(np.float32)
        self._cached: tuple[float, np.ndarray, np.ndarray] | None = None

    def _inner(self, sd: np.ndarray, rng: np.random.Generator, L0: float, rl: np.ndarray) -> np.ndarray:
        """Bright structures inside the cavity at ED: trabeculae along the wall, papillary muscles (0..1)."""
        import cv2

        look = self.look
        n_rows, n_cols = sd.shape
        out = np.zeros(sd.shape, np.float32)
        if look.trabeculation > 0:
            coarse = rng.standard_normal((n_rows // 6 + 2, n_cols // 6 + 2)).astype(np.float32)
            fine = cv2.resize(coarse, (n_cols, n_rows), interpolation=cv2.INTER_CUBIC)
            thr = float(np.quantile(fine, 1 - look.trabeculation))
            near_wall = band(sd, -3.0, -0.4, 0.6)
            out = np.maximum(out, np.clip((fine - thr) * 2, 0, 1) * near_wall)
        uu = self.u_min + np.arange(n_rows, dtype=np.float32)[:, None] * _F(LUT_MM)
        vv = self.v_min + np.arange(n_cols, dtype=np.float32)[None, :] * _F(LUT_MM)
        for t, inset, half, rad in look.papillary:
            _, r_lat = lv_sides(self.case, self.st0, np.array([t * L0]))
            cu, cv = t * L0, float(r_lat[0]) - inset
            d = ellipse_sd(uu - _F(cu), vv - _F(cv), half, rad)
            out = np.maximum(out, ramp(d, 1.0) * ramp(sd + 0.3, 0.6))  # never outside the cavity
        return out

    def _absorb(self, shape: tuple[int, int]) -> np.ndarray | None:
        """Rib and lung shadows: absorbers near the skin that darken everything behind them along the beam."""
        look, grid = self.look, self.grid
        if look.rib is None and not look.lung:
            return None
        lat = np.linspace(-1.0, 1.0, grid.n_l, dtype=np.float32)[None, :]
        depth = grid.depth
        out = np.zeros(shape, np.float32)
        if look.rib is not None:
            pos, width, total = look.rib
            cols = np.exp(-0.5 * ((lat - _F(pos)) / _F(width / 2)) ** 6)
            rows = band(depth - _F(look.chest_mm * 0.5), -2.0, 2.0, 1.0)
            out += _F(total / 4.0) * cols * rows
        if look.lung:
            side = 1.0  # lateral to the LV: +x before any mirroring
            cols = np.clip((lat * _F(side) - _F(1 - 2 * look.lung)) / _F(0.08), 0, 1)
            rows = ramp(_F(look.chest_mm + 15.0) - depth, 6.0)
            out += _F(0.25) * cols * rows
        return out

    def _rows(self, seg: tuple[float, float, float, float], pad_mm: float) -> slice:
        """Beam rows (a range band) that hold the segment (u0, v0, u1, v1) and `pad_mm` around it."""
        x, z = from_local(np.array(seg[0::2]), np.array(seg[1::2]), self.case.apex_x, self.case.apex_z,
                          self.case.tilt_deg)  # fmt: skip
        r = np.hypot(x, z)
        dr = self.grid.dr_mm
        lo = max(0, int((r.min() - pad_mm) / dr))
        hi = min(self.grid.n_r, int(math.ceil((r.max() + pad_mm) / dr)) + 1)
        return slice(lo, max(lo, hi))

    def _lv(self, c: float) -> tuple[np.ndarray, np.ndarray]:
        """(signed distance to the cavity in mm, inner bright structures) at contraction c (cached per c)."""
        import cv2

        if self._cached is not None and self._cached[0] == c:
            return self._cached[1], self._cached[2]
        st = lv_state(self.case, c)
        s_l, s_r = st.length / self.st0.length, st.radius / self.st0.radius
        mx = (self.v * _F(1 / s_r) - _F(self.v_min)) * _F(1 / LUT_MM)
        my = (self.u * _F(1 / s_l) - _F(self.u_min)) * _F(1 / LUT_MM)
        out = cv2.remap(
            self.lut, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 0)
        )
        d = out[..., 0] * _F(0.5 * (s_l + s_r))
        inner = out[..., 1]
        self._cached = (c, d, inner)
        return d, inner

    def tissue(self, c: float, opening: float) -> Tissue:
        case, look, u, v = self.case, self.look, self.u, self.v
        st = lv_state(case, c)
        L, b = st.length, st.radius
        d_lv, inner = self._lv(c)
        lv_cav = ramp(d_lv, 1.0)
        r_sept_mid = float(lv_sides(case, st, np.array([0.55 * L]))[0][0])
        r_ann = float(lv_sides(case, st, np.array([L * 0.999]))[0][0])
        gap = 3.0
        # --- LA below the annulus (fills while the ventricle empties)
        la_a, la_b = case.la_a * (1 + 0.12 * c), case.la_b * (1 + 0.12 * c)
        la_c, la_v = L + gap + la_a * 0.92, 0.15 * b
        du, dv = u - _F(la_c), v - _F(la_v)
        d_la = _bumped(ellipse_sd(du, dv, la_a, la_b), du, dv, la_a, la_b, look.la_bumps)
        la_cav = np.minimum(ramp(d_la, 1.2), ramp(_F(L + gap * 0.5) - u, 1.0))
        chan = np.minimum(
            ramp(np.abs(v) - _F(r_ann - 1.5), 1.0),
            ramp(np.abs(u - _F(L + gap / 2)) - _F(gap / 2 + 1.5), 1.0),
        )
        # --- RV beside the septum
        rv_b = case.rv_radius_mm * (1 - 0.22 * c)
        rv_u0 = case.rv_start * case.lv_length_mm
        rv_len = (L - rv_u0) * 0.97
        rv_a = rv_len / 1.7
        rv_vc = -(r_sept_mid + case.septum_mm * (1 + 0.3 * c) + rv_b)
        du, dv = u - _F(rv_u0 + rv_a), v - _F(rv_vc)
        d_rv = _bumped(ellipse_sd(du, dv, rv_a, rv_b), du, dv, rv_a, rv_b, look.rv_bumps)
        rv_base = rv_u0 + rv_len
        septum_min = 0.6 * case.septum_mm
        rv_cav = np.minimum(
            np.minimum(ramp(d_rv, 1.2), ramp(u - _F(rv_base), 1.0)), ramp(_F(septum_min) - d_lv, 1.0)
        )
        # --- RA below the tricuspid annulus
        ra_a, ra_b = case.ra_a * (1 + 0.1 * c), case.ra_b * (1 + 0.1 * c)
        ra_c, ra_v = rv_base + gap + ra_a * 0.92, la_v - la_b - 2.0 - ra_b
        du, dv = u - _F(ra_c), v - _F(ra_v)
        d_ra = _bumped(ellipse_sd(du, dv, ra_a, ra_b), du, dv, ra_a, ra_b, look.ra_bumps)
        ra_cav = np.minimum(ramp(d_ra, 1.2), ramp(_F(rv_base + gap * 0.5) - u, 1.0))
        r_tv = float(rv_b * 0.75)
        tchan = np.minimum(
            ramp(np.abs(v - _F(rv_vc)) - _F(r_tv - 1.5), 1.0),
            ramp(np.abs(u - _F(rv_base + gap / 2)) - _F(gap / 2 + 1.5), 1.0),
        )
        # --- walls: union of every chamber grown by its wall thickness
        d_heart = np.minimum(
            np.minimum(d_lv - _F(st.wall), d_rv - _F(look.rv_wall_mm)),
            np.minimum(d_la - _F(2.0), d_ra - _F(2.0)),
        )
        wall = ramp(d_heart, 1.5)
        basal = ramp(_F(L + gap + 4) - u, 4.0)  # 1 in the atria, 0 in the ventricles
        blood = np.maximum(
            np.maximum(np.maximum(lv_cav, la_cav), np.maximum(rv_cav, ra_cav)), np.maximum(chan, tchan)
        )
        # --- echogenicity, from the outside in: dark surround, fat, myocardium, pericardium, blood
        echo = _F(look.bg_echo) * self.tex_bg
        echo = echo + _F(look.fat_echo) * band(d_heart, 0.0, 7.0, 3.0) * self.tex_bg
        lateral = ramp(_F(0.35) * b - v, 5.0) * (1 - basal)  # LV free wall side
        septal = ramp(v + _F(0.35) * b, 4.0) * ramp(d_rv, 2.0) * (1 - basal)  # between the cavities
        myo = _F(look.myo_echo) * self.tex_myo * (1 - 0.75 * basal)
        # walls facing the beam reflect strongly, walls along it (lateral LV and atrial sides) weakly; the
        # septum stays visible (thick, blood on both sides). |d(distance)/d(range)| = cos(normal, beam).
        facing = np.empty_like(d_heart)
        facing[1:] = np.abs(np.diff(d_heart, axis=0)) * _F(1 / self.grid.dr_mm)
        facing[0] = facing[1]
        facing = np.minimum(facing, _F(1))
        aspect = _F(1) - _F(look.aspect) * (1 - facing * facing) * (1 - septal)
        myo = myo * (1 + (self.lateral_gain - 1) * lateral) * (1 + _F(look.septum_gain - 1) * septal)
        echo = blend(echo, myo * aspect * self.patchy, wall)
        # the pericardium shows most behind the atria (the far field) and along the free walls
        far = np.clip((u - _F(L + gap + 1.55 * la_a)) * _F(1 / (0.45 * la_a)), 0.0, 1.0)
        far = np.maximum(far, _F(0.5) * lateral) + _F(0.1)
        peri = band(d_heart, 0.4, 2.0, 1.0) * far * self.peri_gain * aspect
        echo = echo + _F(look.peri_echo) * peri * self.tex_myo
        echo = blend(echo, _F(look.blood_echo), blood)
        echo = blend(echo, _F(look.myo_echo * 1.3) * self.tex_myo, inner * lv_cav)
        if self.ias_dropout:  # the thin interatrial septum often drops out in this view
            seg = (L + gap + 6, la_v - la_b - 2.5, L + gap + 2 * la_a, la_v - la_b - 2.5)
            sl = self._rows(seg, 3.0)
            ias = ramp(segment_distance(u[sl], v[sl], *seg) - 1.5, 1.0)
            echo[sl] = blend(echo[sl], _F(look.blood_echo * 3), ias * 0.8)
        if look.moderator:  # the RV's moderator band, from the septum to the free wall
            mu = rv_u0 + 0.45 * rv_len
            seg = (mu, rv_vc + rv_b, mu - 0.15 * rv_len, rv_vc - rv_b)
            sl = self._rows(seg, 3.0)
            d = segment_distance(u[sl], v[sl], *seg)
            echo[sl] = blend(echo[sl], _F(look.myo_echo * 1.5), ramp(d - 0.9, 1.0) * rv_cav[sl])
        if look.aorta:  # descending aorta behind the left atrium
            cu, cv = L + gap + 2 * la_a + 6.0, la_v + 0.5 * la_b
            sl = self._rows((cu, cv, cu, cv), 12.0)
            d = np.sqrt((u[sl] - _F(cu)) ** 2 + (v[sl] - _F(cv)) ** 2) - _F(8.0)
            e = blend(echo[sl], _F(look.myo_echo * 0.8) * self.tex_myo[sl], band(d, -0.5, 2.5, 1.0))
            echo[sl] = blend(e, _F(look.blood_echo), ramp(d, 1.0))
        # --- valves: leaflets hinge at the annulus, closed across it in systole, swinging into the ventricle
        spec = (_F(0.35 * math.sqrt(look.peri_echo)) * peri).astype(np.float32)
        ang = np.deg2rad(10 + 75 * opening)
        for hv, sign, rad, uu in (
            (-r_ann, 1, r_ann, L),
            (r_ann, -1, r_ann, L),
            (rv_vc - r_tv, 1, r_tv, rv_base),
            (rv_vc + r_tv, -1, r_tv, rv_base),
        ):
            ln = rad * self.leaflet * (1.1 if sign > 0 else 0.95)
            seg = (uu + gap * 0.5, hv, uu + gap * 0.5 - ln * math.sin(ang), hv + sign * ln * math.cos(ang))
            sl = self._rows(seg, 3.0)
            m = ramp(segment_distance(u[sl], v[sl], *seg) - 0.4, 1.0)
            echo[sl] = blend(echo[sl], _F(look.valve_echo), m)
            spec[sl] += m * _F(0.3)
        echo = echo * (1 - self.chest) + self.near  # chest wall, its reverberations and the clutter haze
        return Tissue(echo=echo.astype(np.float32), specular=spec, absorb=self.absorb)

    def motion_map(self, c: float) -> tuple[np.ndarray, np.ndarray]:
        """Beam indices (row, col) in the reference (ED) frame of each current sample: speckle rides the wall."""
        case = self.case
        st = lv_state(case, c)
        su, sv = st.length / self.st0.length, st.radius / self.st0.radius
        d_lv, _ = self._lv(c)
        w = np.clip(1.0 - np.maximum(d_lv - _F(st.wall), 0) / _F(25.0), 0, 1)
        u_ref = self.u + w * (self.u / _F(su) - self.u)
        v_ref = self.v + w * (self.v / _F(sv) - self.v)
        x, z = from_local(u_ref, v_ref, case.apex_x, case.apex_z, case.tilt_deg)
        g = self.grid
        row, col = beam_index(g.geom, g.n_r, g.n_l, x, z)
        row = np.where(row < 0, np.arange(g.n_r)[:, None], row)
        col = np.where(col < 0, np.arange(g.n_l)[None, :], col)
        return row, col
