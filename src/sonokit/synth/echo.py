"""Apical four-chamber cine with a beating LV whose volume is known exactly, written as an EchoNet-Dynamic folder.

The LV cavity is a truncated ellipse (a "bullet": apex at u = 0, mitral annulus at u = L) in a frame tilted per
case. Over the cycle the length and radius scale between end-diastole and end-systole so that the volume ratio
is exactly 1 - EF; the apex stays put and the base descends, as in real hearts. RV, atria, septum, valves and
pericardium surround it. Tracings are cut from the same analytic contour, so FileList's EF is Simpson's EF of
the written tracings by construction.

Two looks (`realism`): "full" (the default) and "basic", the original geometric phantom (smooth ellipses, bright
speckled background). "full" adds what real apical-4-chamber cines show, drawn per case in `echo_full.py`: LV outlines
beyond ellipses (bullet shapes, smooth Fourier bumps per side, foreshortening), papillary muscles and
trabeculation, moderator band, a dark surround with a bright pericardium, near-field clutter and reverberation,
lateral-wall drop-out, rib and lung shadows, a TGC curve, fan-edge fall-off, per-case speckle size, sector,
depth, zoom, a few degrees of rotation about the probe, frame rates of 20-90 fps, and either screen convention
(LV on the right as in EchoNet, or mirrored). The LV is still self-similar over the cycle (its outline is
scaled along and across its axis), so the written tracings' Simpson EF equals FileList's EF exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sonokit.synth.bmode import Acquisition, BModeRenderer, Tissue, ar1_step, random_acquisition, warp_scatter
from sonokit.synth.scan import ProbeGeometry, beam_index, image_frame
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
from sonokit.synth.writer import atomic_dir, case_rng, check_args
from sonokit.utils import get_logger, progress, write_csv

KIND_ID = 1
SPLITS = ("TRAIN", "VAL", "TEST", "TRAIN", "TRAIN", "TRAIN", "TRAIN", "TRAIN")  # 75 / 12.5 / 12.5 by case
N_DISCS = 20
log = get_logger(__name__)


REALISMS = ("basic", "full")
CONVENTIONS = ("right", "left", "both")


@dataclass(frozen=True)
class LVShape:
    """LV outline over t = u / L in [0, 1] (apex to annulus) as half-widths in units of the ED radius, per side.

    A blend of the truncated ellipse (`kappa`) and a bullet (round cap up to `shoulder`, then a taper towards the
    annulus), times 1 + a sine series per side (zero at the apex and the annulus, so the annulus centre stays
    on the axis). The whole outline scales along and across its axis over the cycle.
    """

    kappa: float
    bullet: float = 0.0
    shoulder: float = 0.5
    taper: float = 0.25
    septal: tuple[float, ...] = ()
    lateral: tuple[float, ...] = ()

    def base(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        pe = np.sqrt(np.clip(1 - (t * self.kappa - 1) ** 2, 0, None))
        if self.bullet <= 0:
            return pe
        s = np.clip(t / self.shoulder, 0, 1)
        cap = np.sqrt(np.clip(1 - (1 - s) ** 2, 0, None))
        tail = 1 - self.taper * np.clip((t - self.shoulder) / (1 - self.shoulder), 0, 1) ** 2
        pb = np.where(t < self.shoulder, cap, tail)
        return (1 - self.bullet) * pe + self.bullet * pb

    def sides(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(septal, lateral) half-widths at t (0 outside [0, 1])."""
        t = np.asarray(t, dtype=np.float64)
        p = self.base(t)
        out = []
        for coefs in (self.septal, self.lateral):
            bump = np.ones_like(t)
            for k, a in enumerate(coefs, start=1):
                bump = bump + a * np.sin(k * np.pi * t)
            out.append(np.where((t >= 0) & (t <= 1), p * np.clip(bump, 0.7, 1.3), 0.0))
        return out[0], out[1]


@dataclass(frozen=True)
class EchoCase:
    """Every random choice of one echo case; pure data, so EF statistics can be drawn without rendering."""

    index: int
    seed: int
    ef_target: float
    hr_bpm: float
    fps: float
    n_frames: int
    phase0: float
    systole: float
    lv_length_mm: float  # apex to mitral annulus at ED
    lv_radius_mm: float  # equatorial radius of the ellipse at ED
    kappa: float  # L / ellipse semi-axis: 2 would be a full half-ellipsoid, less a narrower annulus
    f_long: float  # L_ES / L_ED
    f_rad: float  # b_ES / b_ED
    wall_mm: float
    apex_x: float
    apex_z: float
    tilt_deg: float
    rv_radius_mm: float
    rv_start: float  # RV apex position as a fraction of LV length
    septum_mm: float
    la_a: float
    la_b: float
    ra_a: float
    ra_b: float
    myo_echo: float
    blood_echo: float
    bg_echo: float
    peri_echo: float
    clutter: float
    rho: float
    geom: ProbeGeometry
    acq: Acquisition
    split: str
    extra: dict = field(default_factory=dict, compare=False)
    realism: str = "basic"
    convention: str = "right"  # "right": LV on the image's right (EchoNet); "left": the mirror image
    shape: LVShape | None = None  # None: the basic truncated ellipse on both sides
    rotation_deg: float = 0.0  # rigid rotation of the anatomy about the probe (already in apex_x/z, tilt)
    foreshortened: bool = False
    look: object | None = None  # echo_full.EchoLook for realism "full"

    @property
    def name(self) -> str:
        return f"echo_{self.index:05d}"

    @property
    def mm_per_px(self) -> float:
        return image_frame(self.geom, int(self.extra.get("size", 112))).mm_per_px


def sample_ef(rng: np.random.Generator) -> float:
    """EF target: most hearts near normal, a wide tail of reduced (and some hyperdynamic) ones, 10-80 %."""
    if rng.random() < 0.55:
        return float(np.clip(rng.normal(60.0, 7.0), 30.0, 80.0))
    return float(rng.uniform(10.0, 80.0))


def check_echo_options(
    realism: str = "full",
    convention: str = "right",
    fps_range: tuple[float, float] = (20.0, 90.0),
    max_rotation_deg: float = 5.0,
) -> None:
    """Reject bad simulator options before any folder is created."""
    from sonokit.errors import InputError

    if realism not in REALISMS:
        raise InputError(f"realism must be one of {', '.join(REALISMS)}, got {realism!r}")
    if convention not in CONVENTIONS:
        raise InputError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    lo, hi = (float(v) for v in fps_range)
    if not (5.0 <= lo <= hi <= 240.0):
        raise InputError(f"fps range must satisfy 5 <= min <= max <= 240, got {lo:g}-{hi:g}")
    if not (0.0 <= float(max_rotation_deg) <= 20.0):
        raise InputError(f"max rotation must be between 0 and 20 degrees, got {max_rotation_deg:g}")


def sample_echo_case(
    seed: int,
    index: int,
    size: int = 112,
    realism: str = "full",
    convention: str = "right",
    fps_range: tuple[float, float] = (20.0, 90.0),
    max_rotation_deg: float = 5.0,
) -> EchoCase:
    """Draw one case's anatomy, rhythm and scanner settings (no rendering).

    The basic draws come from the case's first random stream, so a case's EF, size and rhythm are the same in
    both looks; realism "full" then draws its extra choices from a second stream (`echo_full.fuller_case`).
    `convention` "both" draws the screen side per case.
    """
    check_echo_options(realism, convention, fps_range, max_rotation_deg)
    case = _sample_basic(seed, index, size)
    if realism == "full":
        from sonokit.synth.echo_full import fuller_case

        rng = case_rng(seed, KIND_ID, index, stream=1)
        case = fuller_case(case, rng, size, fps_range=fps_range, max_rotation_deg=max_rotation_deg)
        case = _fit_in_view(case, size)
    if convention == "both":
        side = "left" if case_rng(seed, KIND_ID, index, stream=2).random() < 0.5 else "right"
    else:
        side = convention
    return replace(case, convention=side)


def rotate_case(case: EchoCase, degrees: float) -> EchoCase:
    """The same heart turned rigidly by `degrees` about the probe (positive turns the axis towards +x)."""
    t = math.radians(degrees)
    x = case.apex_x * math.cos(t) + case.apex_z * math.sin(t)
    z = -case.apex_x * math.sin(t) + case.apex_z * math.cos(t)
    return replace(
        case, apex_x=x, apex_z=z, tilt_deg=case.tilt_deg + degrees, rotation_deg=case.rotation_deg + degrees
    )


def _sample_basic(seed: int, index: int, size: int = 112) -> EchoCase:
    rng = case_rng(seed, KIND_ID, index)
    ef = sample_ef(rng)
    dilation = max(0.0, (50.0 - ef) / 40.0)  # failing hearts are bigger
    length = 82.0 * (1 + 0.18 * dilation) * math.exp(rng.normal(0, 0.07))
    radius = 21.0 * (1 + 0.32 * dilation) * math.exp(rng.normal(0, 0.08))
    kappa = float(rng.uniform(1.6, 1.8))
    q = 1.0 - ef / 100.0
    alpha = float(rng.uniform(0.18, 0.38))  # share of the volume change taken by long-axis shortening
    f_long = q**alpha
    f_rad = q ** ((1 - alpha) / 2)
    if rng.random() < 0.65:
        tilt = float(rng.normal(5, 4))
    else:  # clearly tilted long axis, either way
        tilt = float(rng.uniform(13, 24)) if rng.random() < 0.6 else float(rng.uniform(-14, -6))
    apex_z = float(rng.uniform(12.0, 30.0))
    apex_x = float(rng.uniform(0.0, 10.0))
    hr = float(rng.uniform(50.0, 110.0))
    fps = float(rng.uniform(30.0, 55.0))
    beat = fps * 60.0 / hr
    n_frames = max(64, int(math.ceil(2.15 * beat)))
    if n_frames > 128:  # keep clips short: slow hearts get a lower frame rate
        fps = 128 / 2.15 * hr / 60.0
        n_frames = 128
    la_a = float(rng.uniform(20, 27) * (1 + 0.2 * dilation))
    la_b = float(rng.uniform(17, 23) * (1 + 0.2 * dilation))
    base_z = apex_z + length * math.cos(math.radians(tilt))
    depth = float(np.clip(base_z + 2 * la_a * rng.uniform(0.55, 1.0) + rng.uniform(0, 15), 125.0, 200.0))
    geom = ProbeGeometry(
        kind="sector",
        depth_mm=depth,
        angle_deg=float(rng.uniform(72.0, 90.0)),
        zoom=float(rng.uniform(1.05, 1.3)),
    )
    acq = random_acquisition(rng)
    case = EchoCase(
        index=index,
        seed=seed,
        ef_target=ef,
        hr_bpm=hr,
        fps=round(fps, 2),
        n_frames=n_frames,
        phase0=float(rng.uniform(0, 1)),
        systole=float(np.clip(0.30 + 0.1 * (hr - 60) / 50 + rng.normal(0, 0.02), 0.27, 0.42)),
        lv_length_mm=float(length),
        lv_radius_mm=float(radius),
        kappa=kappa,
        f_long=float(f_long),
        f_rad=float(f_rad),
        wall_mm=float(rng.uniform(7.0, 11.0)),
        apex_x=apex_x,
        apex_z=apex_z,
        tilt_deg=tilt,
        rv_radius_mm=float(radius * rng.uniform(0.6, 0.85)),
        rv_start=float(rng.uniform(0.15, 0.3)),
        septum_mm=float(rng.uniform(7.0, 11.0)),
        la_a=la_a,
        la_b=la_b,
        ra_a=float(rng.uniform(18, 25)),
        ra_b=float(rng.uniform(15, 21)),
        myo_echo=float(rng.uniform(0.2, 0.5)),
        blood_echo=float(10 ** rng.uniform(-3.6, -2.7)),
        bg_echo=float(rng.uniform(0.01, 0.06)),
        peri_echo=float(rng.uniform(1.5, 4.0)),
        clutter=float(10 ** rng.uniform(-2.6, -1.3)),
        rho=float(rng.uniform(0.8, 0.95)),
        geom=geom,
        acq=acq,
        split=SPLITS[index % len(SPLITS)],
        extra={"size": size, "noise_seed": int(rng.integers(2**31))},
    )
    return _fit_in_view(case, size)


def _fit_in_view(case: EchoCase, size: int, margin_mm: float = 3.0) -> EchoCase:
    """Move the heart (deeper, sideways) or widen the view until the LV cavity sits inside the displayed fan.

    The traced contour must be visible: a cut-off lateral wall would make the ground truth unreadable.
    """
    for _ in range(80):
        st = lv_state(case, 0.0)
        u = np.linspace(0.0, st.length, 24)
        r_sept, r_lat = lv_sides(case, st, u)
        r_sept, r_lat = r_sept + 0.5 * st.wall, r_lat + 0.5 * st.wall  # the cavity and most of its wall
        x, z = from_local(
            np.concatenate([u, u]), np.concatenate([-r_sept, r_lat]), case.apex_x, case.apex_z, case.tilt_deg
        )
        half = math.radians(case.geom.angle_deg / 2) - margin_mm / max(float(z.min()), 10.0)
        theta = np.arctan2(x, z)
        x_lim = image_frame(case.geom, size).mm_per_px * size / 2 - margin_mm
        over = np.maximum(np.abs(theta) - half, (np.abs(x) - x_lim) / 50.0)  # > 0: outside the view
        if float(z.max()) > case.geom.depth_mm - 10:
            case = replace(case, geom=replace(case.geom, depth_mm=float(z.max()) + 15))
            continue
        if over.max() <= 0:
            return case
        worst = int(np.argmax(over))
        both = (over[theta > 0].max(initial=-1) > 0) and (over[theta < 0].max(initial=-1) > 0)
        if both or z[worst] < 40:  # too wide for the fan this close to the probe: go deeper, open up
            geom = replace(
                case.geom,
                angle_deg=min(90.0, case.geom.angle_deg + 1.0),
                zoom=max(1.0, case.geom.zoom - 0.02),
            )
            case = replace(case, apex_z=case.apex_z + 2.0, geom=geom)
        else:  # slide sideways by about the overshoot (radians at ~50 mm depth), at most 3 mm a step
            step = min(3.0, 50.0 * float(over[worst]) + 0.5)
            case = replace(case, apex_x=case.apex_x - step * float(np.sign(theta[worst])))
    return case


# ----------------------------------------------------------------------------------------------- cardiac cycle


def contraction(phi: np.ndarray, systole: float) -> np.ndarray:
    """Contraction state c in [0, 1] (0 = end-diastole, 1 = end-systole) over the cycle phase phi in [0, 1).

    Isovolumic contraction, ejection, isovolumic relaxation (plateaus at exactly 0 and 1 so that traced ED/ES
    frames sit on the true extremes), rapid filling, diastasis, atrial kick.
    """
    phi = np.mod(np.asarray(phi, dtype=np.float64), 1.0)
    ivct, ivrt, fill = 0.05, 0.08, 0.22
    c = np.zeros_like(phi)
    t = (phi - ivct) / (systole - ivct)
    c = np.where((phi >= ivct) & (phi < systole), 0.5 * (1 - np.cos(np.pi * np.clip(t, 0, 1))), c)
    c = np.where((phi >= systole) & (phi < systole + ivrt), 1.0, c)
    t = (phi - systole - ivrt) / fill
    rapid = 1.0 - 0.72 * 0.5 * (1 - np.cos(np.pi * np.clip(t, 0, 1)))
    c = np.where((phi >= systole + ivrt) & (phi < systole + ivrt + fill), rapid, c)
    kick = 0.86
    t = (phi - systole - ivrt - fill) / max(kick - systole - ivrt - fill, 1e-3)
    c = np.where((phi >= systole + ivrt + fill) & (phi < kick), 0.28 - 0.06 * np.clip(t, 0, 1), c)
    t = (phi - kick) / (1 - kick)
    c = np.where(phi >= kick, 0.22 * 0.5 * (1 + np.cos(np.pi * np.clip(t, 0, 1))), c)
    return c


def mitral_opening(phi: np.ndarray, systole: float) -> np.ndarray:
    """0 closed .. 1 wide open: open in rapid filling and atrial kick, half-closed in diastasis."""
    phi = np.mod(np.asarray(phi, dtype=np.float64), 1.0)
    start = systole + 0.08
    o = np.where((phi >= start) & (phi < start + 0.2), 1.0, 0.0)
    o = np.where((phi >= start + 0.2) & (phi < 0.86), 0.45, o)
    o = np.where((phi >= 0.86) & (phi < 0.99), 0.9, o)
    return o


def frame_phases(case: EchoCase) -> np.ndarray:
    t = np.arange(case.n_frames) / case.fps
    return np.mod(case.phase0 + t * case.hr_bpm / 60.0, 1.0)


@dataclass(frozen=True)
class LVState:
    length: float  # apex to annulus, mm
    radius: float  # ellipse's equatorial radius b, mm
    semi: float  # ellipse's long semi-axis a = L / kappa
    wall: float


def lv_state(case: EchoCase, c: float) -> LVState:
    length = case.lv_length_mm * (1 - c * (1 - case.f_long))
    radius = case.lv_radius_mm * (1 - c * (1 - case.f_rad))
    # the myocardium thickens as the cavity shrinks (roughly conserved wall area)
    wall = case.wall_mm * (1 + 0.45 * c * (1 - case.f_rad) / 0.3)
    return LVState(length=length, radius=radius, semi=length / case.kappa, wall=wall)


def lv_half_width(state: LVState, u: np.ndarray) -> np.ndarray:
    """Radius of the cavity at distance u from the apex along the long axis (0 outside [0, L])."""
    t = (np.asarray(u, dtype=np.float64) - state.semi) / state.semi
    r = state.radius * np.sqrt(np.clip(1 - t * t, 0, None))
    return np.where((u >= 0) & (u <= state.length), r, 0.0)


def lv_sides(case: EchoCase, state: LVState, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(septal, lateral) cavity half-widths (mm) at distance u from the apex: the outline that is drawn."""
    if case.shape is None:
        r = lv_half_width(state, u)
        return r, r
    u = np.asarray(u, dtype=np.float64)
    rs, rl = case.shape.sides(u / state.length)
    return state.radius * rs, state.radius * rl


def lv_tracing_mm(case: EchoCase, state: LVState, n_discs: int = N_DISCS) -> np.ndarray:
    """(n+1, 4) tracing in mm (x, z): long axis apex -> annulus centre, then chords at disc centres.

    X1, Z1 of each chord is on the septal side (-v), X2, Z2 on the lateral side, as EchoNet keeps one side
    per column.
    """
    u = (np.arange(n_discs) + 0.5) / n_discs * state.length
    r_sept, r_lat = lv_sides(case, state, u)
    ax0 = from_local(0.0, 0.0, case.apex_x, case.apex_z, case.tilt_deg)
    ax1 = from_local(state.length, 0.0, case.apex_x, case.apex_z, case.tilt_deg)
    s1 = from_local(u, -r_sept, case.apex_x, case.apex_z, case.tilt_deg)
    s2 = from_local(u, r_lat, case.apex_x, case.apex_z, case.tilt_deg)
    rows = [np.array([ax0[0], ax0[1], ax1[0], ax1[1]])]
    rows += [np.array([s1[0][i], s1[1][i], s2[0][i], s2[1][i]]) for i in range(n_discs)]
    return np.asarray(rows)


def lv_volume_ml(case: EchoCase, c: float) -> float:
    """Simpson's single-plane volume (mL) of the true contour at contraction c (mm units, so exact scale)."""
    from sonokit.clinical import volume_from_tracing

    return volume_from_tracing(lv_tracing_mm(case, lv_state(case, c)), spacing_mm=1.0)


# ------------------------------------------------------------------------------------------------ the phantom


class EchoPhantom:
    """Echogenicity of the four-chamber view on a beam grid at a given contraction state."""

    def __init__(self, case: EchoCase, grid, rng: np.random.Generator) -> None:
        self.case, self.grid = case, grid
        shape = grid.shape
        self.tex_myo = np.exp(0.35 * smooth_field(rng, shape, (10, 8))).astype(np.float32)
        self.tex_bg = np.exp(0.6 * smooth_field(rng, shape, (6, 5))).astype(np.float32)
        self.dropout = np.clip(1.0 - 0.6 * np.maximum(smooth_field(rng, shape, (5, 4)) - 0.6, 0), 0.25, 1.0)
        self.u, self.v = rotate(grid.x, grid.z, case.apex_x, case.apex_z, case.tilt_deg)
        self.ias_dropout = bool(rng.random() < 0.5)
        self.leaflet = float(rng.uniform(0.7, 0.95))

    def tissue(self, c: float, opening: float) -> Tissue:
        case, u, v = self.case, self.u, self.v
        st = lv_state(case, c)
        L, b, a = st.length, st.radius, st.semi
        # --- LV
        d_lv = ellipse_sd(u - np.float32(a), v, a, b)
        lv_cav = np.minimum(ramp(d_lv, 1.2), ramp(u - np.float32(L), 1.0))
        r_ann = float(lv_half_width(st, np.array([L * 0.999]))[0])
        # --- LA below the annulus (fills while the ventricle empties)
        gap = 3.0
        la_a, la_b = case.la_a * (1 + 0.12 * c), case.la_b * (1 + 0.12 * c)
        la_c = L + gap + la_a * 0.92
        la_v = 0.15 * b
        d_la = ellipse_sd(u - np.float32(la_c), v - np.float32(la_v), la_a, la_b)
        la_cav = np.minimum(ramp(d_la, 1.2), ramp(np.float32(L + gap * 0.5) - u, 1.0))
        # --- mitral channel connecting LV and LA
        chan = np.minimum(
            ramp(np.abs(v) - np.float32(r_ann - 1.5), 1.0),
            ramp(np.abs(u - np.float32(L + gap / 2)) - np.float32(gap / 2 + 1.5), 1.0),
        )
        # --- RV beside the septum (contracts less, mostly in its short axis)
        rv_b = case.rv_radius_mm * (1 - 0.22 * c)
        rv_len = (L - case.rv_start * case.lv_length_mm) * 0.97
        rv_a = rv_len / 1.7
        rv_u0 = case.rv_start * case.lv_length_mm
        rv_vc = -(b + case.septum_mm * (1 + 0.3 * c) + rv_b)
        d_rv = ellipse_sd(u - np.float32(rv_u0 + rv_a), v - np.float32(rv_vc), rv_a, rv_b)
        rv_base = rv_u0 + rv_len
        rv_cav = np.minimum(ramp(d_rv, 1.2), ramp(u - np.float32(rv_base), 1.0))
        # --- RA below the tricuspid annulus
        ra_a, ra_b = case.ra_a * (1 + 0.1 * c), case.ra_b * (1 + 0.1 * c)
        ra_c = rv_base + gap + ra_a * 0.92
        ra_v = la_v - la_b - 5.0 - ra_b
        d_ra = ellipse_sd(u - np.float32(ra_c), v - np.float32(ra_v), ra_a, ra_b)
        ra_cav = np.minimum(ramp(d_ra, 1.2), ramp(np.float32(rv_base + gap * 0.5) - u, 1.0))
        r_tv = float(rv_b * 0.75)
        tchan = np.minimum(
            ramp(np.abs(v - np.float32(rv_vc)) - np.float32(r_tv - 1.5), 1.0),
            ramp(np.abs(u - np.float32(rv_base + gap / 2)) - np.float32(gap / 2 + 1.5), 1.0),
        )
        # --- walls: union of every chamber grown by its wall thickness
        d_heart = np.minimum(
            np.minimum(d_lv - np.float32(st.wall), d_rv - np.float32(4.5)),
            np.minimum(d_la - np.float32(2.5), d_ra - np.float32(2.5)),
        )
        wall = ramp(d_heart, 1.5)
        basal = ramp(np.float32(L + gap + 4) - u, 4.0)  # 1 in the atria, 0 in the ventricles
        blood = np.maximum(
            np.maximum(np.maximum(lv_cav, la_cav), np.maximum(rv_cav, ra_cav)), np.maximum(chan, tchan)
        )
        # --- echogenicity, from the outside in
        echo = np.float32(case.bg_echo) * self.tex_bg
        # chest wall just under the probe
        echo = echo + np.float32(0.25) * ramp(self.grid.z - np.float32(case.apex_z * 0.6), 6.0) * self.tex_bg
        peri = band(d_heart, -1.5, 2.5, 1.5) * (1 - 0.9 * basal)
        myo = np.float32(case.myo_echo) * self.tex_myo * self.dropout * (1 - 0.6 * basal)
        echo = blend(echo, myo, wall)
        echo = echo + np.float32(case.peri_echo) * peri * self.tex_bg
        echo = blend(echo, np.float32(case.blood_echo), blood)
        if self.ias_dropout:  # thin interatrial septum often drops out in this view
            ias = ramp(
                segment_distance(u, v, L + gap + 6, la_v - la_b - 2.5, L + gap + 2 * la_a, la_v - la_b - 2.5)
                - 1.5,
                1.0,
            )
            echo = blend(echo, np.float32(case.blood_echo * 3), ias * 0.8)
        # --- valves: leaflets hinge at the annulus, closed across it in systole, swinging into the ventricle
        spec = np.zeros_like(echo)
        ang = np.deg2rad(10 + 75 * opening)
        for hv, sign, rad, uu in (
            (-r_ann, 1, r_ann, L),
            (r_ann, -1, r_ann, L),
            (rv_vc - r_tv, 1, r_tv, rv_base),
            (rv_vc + r_tv, -1, r_tv, rv_base),
        ):
            ln = rad * self.leaflet * (1.1 if sign > 0 else 0.95)
            tip_u = uu + gap * 0.5 - ln * math.sin(ang)
            tip_v = hv + sign * ln * math.cos(ang)
            dist = segment_distance(u, v, uu + gap * 0.5, hv, tip_u, tip_v)
            m = ramp(dist - 0.7, 1.0)
            echo = blend(echo, np.float32(case.myo_echo * 2.5), m)
            spec += m * np.float32(0.5)
        # near-field clutter and reverberation haze, strongest at the apex
        echo = echo + np.float32(case.clutter) * np.exp(-self.grid.z / np.float32(18.0)) * self.tex_bg
        return Tissue(echo=echo.astype(np.float32), specular=spec)

    def motion_map(self, c: float) -> tuple[np.ndarray, np.ndarray]:
        """Beam indices (row, col) in the reference (ED) frame of each current sample: speckle rides the wall."""
        case = self.case
        st0, st = lv_state(case, 0.0), lv_state(case, c)
        su, sv = st.length / st0.length, st.radius / st0.radius
        d0 = ellipse_sd(self.u - np.float32(st.semi), self.v, st.semi + st.wall, st.radius + st.wall)
        w = np.clip(1.0 - np.maximum(d0, 0) / np.float32(25.0), 0, 1)
        u_ref = self.u + w * (self.u / np.float32(su) - self.u)
        v_ref = self.v + w * (self.v / np.float32(sv) - self.v)
        x, z = from_local(u_ref, v_ref, case.apex_x, case.apex_z, case.tilt_deg)
        g = self.grid
        row, col = beam_index(g.geom, g.n_r, g.n_l, x, z)
        row = np.where(row < 0, np.arange(g.n_r)[:, None], row)
        col = np.where(col < 0, np.arange(g.n_l)[None, :], col)
        return row, col


@dataclass
class EchoClip:
    case: EchoCase
    frames: np.ndarray  # (F, S, S) uint8
    contraction: np.ndarray  # (F,)
    ed_frame: int
    es_frame: int
    tracings_px: dict[int, np.ndarray]  # frame -> (21, 4) in pixels
    volumes_ml: dict[int, float]


def traced_frames(case: EchoCase) -> tuple[int, int, np.ndarray]:
    """(ED, ES, contraction per frame): ED is the fullest frame of the first beat, ES the emptiest after it."""
    c = contraction(frame_phases(case), case.systole)
    beat = int(math.ceil(case.fps * 60.0 / case.hr_bpm))
    ed = int(np.argmin(c[:beat]))
    es = ed + 1 + int(np.argmax(c[ed + 1 : ed + 1 + beat]))
    return ed, es, c


def render_echo(case: EchoCase, size: int = 112) -> EchoClip:
    """Render the cine and cut the ED / ES tracings from the analytic contour."""
    rng = np.random.default_rng(case.extra["noise_seed"])
    renderer = BModeRenderer(case.geom, case.acq, size)
    if case.look is None:
        phantom = EchoPhantom(case, renderer.grid, rng)
    else:
        from sonokit.synth.echo_full import FullEchoPhantom

        phantom = FullEchoPhantom(case, renderer.grid, rng)
    phases = frame_phases(case)
    ed, es, c = traced_frames(case)
    opening = mitral_opening(phases, case.systole)
    ref = renderer.new_scatter(rng)
    pool = renderer.noise_pool(rng)
    frames = np.empty((case.n_frames, size, size), dtype=np.uint8)
    for t in range(case.n_frames):
        if t:
            ref = ar1_step(ref, rng, case.rho, pool)
        row, col = phantom.motion_map(float(c[t]))
        scatter = warp_scatter(ref, row, col)
        frames[t] = renderer.frame(phantom.tissue(float(c[t]), float(opening[t])), scatter, rng, pool)
    frame = renderer.converter.frame
    tracings, volumes = {}, {}
    for f in (ed, es):
        mm = lv_tracing_mm(case, lv_state(case, float(c[f])))
        x1, y1 = frame.to_px(mm[:, 0], mm[:, 1])
        x2, y2 = frame.to_px(mm[:, 2], mm[:, 3])
        if case.convention == "left":  # the mirror image: labels flip with the pixels
            x1, x2 = (size - 1) - x1, (size - 1) - x2
        tracings[f] = np.round(np.stack([x1, y1, x2, y2], axis=1), 4)
    if case.convention == "left":
        frames = np.ascontiguousarray(frames[:, :, ::-1])
    from sonokit.clinical import volume_from_tracing

    for f, tr in tracings.items():
        volumes[f] = volume_from_tracing(tr, spacing_mm=frame.mm_per_px)
    return EchoClip(
        case=case,
        frames=frames,
        contraction=c,
        ed_frame=ed,
        es_frame=es,
        tracings_px=tracings,
        volumes_ml=volumes,
    )


def write_echo_case(root: Path, clip: EchoClip) -> tuple[dict, list[dict], dict]:
    """Write one AVI; return its FileList row, its VolumeTracings rows (ES first, ED last, as EchoNet sorts
    them) and a row of simulation metadata."""
    from sonokit.clinical import ejection_fraction
    from sonokit.io import write_video

    case = clip.case
    write_video(root / "Videos" / f"{case.name}.avi", clip.frames, fps=case.fps)
    edv, esv = clip.volumes_ml[clip.ed_frame], clip.volumes_ml[clip.es_frame]
    size = clip.frames.shape[1]
    row = {
        "FileName": case.name,
        "EF": round(ejection_fraction(edv, esv), 6),
        "ESV": round(esv, 6),
        "EDV": round(edv, 6),
        "FrameHeight": size,
        "FrameWidth": size,
        "FPS": case.fps,
        "NumberOfFrames": case.n_frames,
        "Split": case.split,
    }
    traces = []
    for f in (clip.es_frame, clip.ed_frame):
        for x1, y1, x2, y2 in clip.tracings_px[f]:
            traces.append(
                {"FileName": f"{case.name}.avi", "X1": x1, "Y1": y1, "X2": x2, "Y2": y2, "Frame": f}
            )
    meta = {
        "FileName": case.name,
        "ef_target": round(case.ef_target, 3),
        "ed_frame": clip.ed_frame,
        "es_frame": clip.es_frame,
        "mm_per_px": round(float(image_frame(case.geom, size).mm_per_px), 6),
        "hr_bpm": round(case.hr_bpm, 2),
        "tilt_deg": round(case.tilt_deg, 2),
        "depth_mm": round(case.geom.depth_mm, 2),
        "sector_deg": round(case.geom.angle_deg, 2),
        "gain_db": round(case.acq.gain_db, 2),
        "dynamic_range_db": round(case.acq.dynamic_range_db, 2),
        "realism": case.realism,
        "convention": case.convention,
        "rotation_deg": round(case.rotation_deg, 2),
        "foreshortened": int(case.foreshortened),
        "zoom": round(case.geom.zoom, 3),
    }
    return row, traces, meta


def make_echo_dataset(
    out: str | Path,
    n: int = 16,
    seed: int = 0,
    size: int = 112,
    overwrite: bool = False,
    realism: str = "full",
    convention: str = "right",
    fps_range: tuple[float, float] = (20.0, 90.0),
    max_rotation_deg: float = 5.0,
) -> Path:
    """Write an EchoNet-Dynamic folder of `n` simulated apical-4-chamber cines; returns the folder.

    Videos/<name>.avi (MJPG, size x size, 3 channels), FileList.csv, VolumeTracings.csv (ES then ED, 21 rows
    each) and synth_meta.csv (simulation parameters such as mm_per_px, for checks; not part of EchoNet).
    `realism` "full" (default) or "basic", `convention` "right" (LV on the right, EchoNet), "left" or "both"
    (drawn per case); `fps_range` and `max_rotation_deg` apply to "full".
    """
    import pandas as pd

    check_args(n, size, seed)
    check_echo_options(realism, convention, fps_range, max_rotation_deg)
    opts = dict(
        realism=realism, convention=convention, fps_range=fps_range, max_rotation_deg=max_rotation_deg
    )
    with atomic_dir(out, overwrite) as tmp:
        rows, traces, metas = [], [], []
        for i in progress(range(int(n)), desc="synth echo", total=int(n), unit="video"):
            clip = render_echo(sample_echo_case(seed, i, size, **opts), size)
            row, trace, meta = write_echo_case(tmp, clip)
            rows.append(row)
            traces.extend(trace)
            metas.append(meta)
        # CSVs last: a folder with a FileList.csv has all its videos
        write_csv(pd.DataFrame(traces), tmp / "VolumeTracings.csv")
        write_csv(pd.DataFrame(metas), tmp / "synth_meta.csv")
        write_csv(pd.DataFrame(rows), tmp / "FileList.csv")
    log.info("wrote %d simulated echo cines to %s", n, out)
    return Path(out)
