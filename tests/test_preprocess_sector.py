"""Sector detection against synthetic fans of known geometry and against the real fan edges of real files.

Ground truth for the real files was measured by hand (pixel rows across each edge, columns across each arc; see
the comments at each constant); the synthetic fans are drawn with OpenCV's polygon filler, independently of
sonokit's own renderer.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import iter_pixels

from sonokit.errors import InputError
from sonokit.preprocess import apply_mask, detect_sector, render_sector

# ----------------------------------------------------------------------------------------------- helpers


def fan_polygon(apex, angles, radii, n=361) -> np.ndarray:
    """Outline of a fan: outer arc left to right, inner arc back; angles from the downward vertical."""
    t = np.radians(np.linspace(angles[0], angles[1], n))
    outer = np.stack([apex[0] + radii[1] * np.sin(t), apex[1] + radii[1] * np.cos(t)], axis=1)
    inner = np.stack([apex[0] + radii[0] * np.sin(t[::-1]), apex[1] + radii[0] * np.cos(t[::-1])], axis=1)
    return np.concatenate([outer, inner])


def fan_mask(shape, apex, angles, radii) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(fan_polygon(apex, angles, radii) * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def speckle(region: np.ndarray, n_frames: int, seed: int, dark_ellipses=()) -> np.ndarray:
    """Rayleigh speckle inside `region`, new each frame, with dark blood pools; zeros outside."""
    rng = np.random.default_rng(seed)
    gain = np.ones(region.shape, np.float32)
    for centre, axes in dark_ellipses:
        pool = np.zeros(region.shape, np.uint8)
        cv2.ellipse(pool, centre, axes, 0, 0, 360, 1, -1)
        gain[pool > 0] = 0.04
    out = np.empty((n_frames, *region.shape), np.uint8)
    for i in range(n_frames):
        s = cv2.GaussianBlur(rng.rayleigh(45.0, region.shape).astype(np.float32), (0, 0), 1.0) * gain
        out[i] = np.clip(s, 0, 255).astype(np.uint8) * region
    return out


def burn_text(frames: np.ndarray, items, changing: tuple[int, int] | None = None) -> np.ndarray:
    """White scanner text, static across frames; optionally a frame counter that changes every frame."""
    for i, frame in enumerate(frames):
        for text, org in items:
            cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 2)
        if changing is not None:
            cv2.putText(frame, f"F{i:03d}", changing, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 2)
    return frames


def as_input(frames: np.ndarray, cine: bool, rgb: bool) -> np.ndarray:
    x = frames if cine else frames[0]
    if rgb:
        x = np.repeat(x[..., None], 3, axis=-1).copy()
        x[..., 2] = (x[..., 2] * 0.9).astype(np.uint8)  # a tint, so the channels differ
    return x


# --------------------------------------------------------------------------------------- synthetic fans

FANS = {
    # name: (shape, apex, angles, radii)
    "phased": ((480, 640), (320.0, 20.0), (-40.0, 40.0), (20.0, 420.0)),
    "curved": ((480, 640), (300.0, -120.0), (-30.0, 33.0), (160.0, 560.0)),
    "wide": ((400, 640), (320.0, 30.0), (-60.0, 60.0), (10.0, 340.0)),
}
TEXT = [("SONOKIT C5-1", (5, 20)), ("Depth 16cm", (5, 45)), ("MI 0.9", (560, 20))]


@pytest.mark.parametrize("name", sorted(FANS))
@pytest.mark.parametrize("cine", [False, True], ids=["image", "cine"])
@pytest.mark.parametrize("rgb", [False, True], ids=["gray", "rgb"])
def test_synthetic_fan_geometry_is_recovered(name: str, cine: bool, rgb: bool) -> None:
    shape, apex, angles, radii = FANS[name]
    truth = fan_mask(shape, apex, angles, radii)
    pool = ((int(apex[0]), int(apex[1] + 0.6 * radii[1])), (50, 40))
    frames = burn_text(speckle(truth, 12 if cine else 1, seed=1, dark_ellipses=[pool]), TEXT)
    text = (frames[0] == 255) & ~truth

    geo = detect_sector(as_input(frames, cine, rgb))

    assert geo.kind == "sector"
    assert np.hypot(geo.apex[0] - apex[0], geo.apex[1] - apex[1]) < 2.0
    assert np.allclose(geo.angles_deg, angles, atol=0.5)
    assert np.allclose(geo.radii, radii, atol=3.0)
    assert iou(geo.mask, truth) >= 0.98
    assert text.sum() > 500 and not (geo.mask & text).any()
    blanked = apply_mask(as_input(frames, cine, rgb), geo)
    first = blanked[0] if cine else blanked
    assert first[text].max() == 0  # the burned-in text is gone


def test_fan_with_dark_bay_at_its_edge_is_still_fitted() -> None:
    """A blood pool reaching the fan's edge leaves a bay in the single-image candidate; the fit bridges it."""
    shape, apex, angles, radii = FANS["phased"]
    truth = fan_mask(shape, apex, angles, radii)
    bay = ((int(apex[0] - 150), int(apex[1] + 330)), (90, 70))  # straddles the left edge and the arc
    frames = speckle(truth, 1, seed=2, dark_ellipses=[bay])
    frames[0][frames[0] < 8] = 0  # quantised to black, like JPEG does to a dark pool
    geo = detect_sector(frames[0])
    assert geo.kind == "sector"
    assert np.allclose(geo.angles_deg, angles, atol=1.0)
    assert abs(geo.radii[1] - radii[1]) < 3.0
    assert iou(geo.mask, truth) >= 0.97


def test_cine_ignores_static_text_touching_the_fan_and_a_changing_frame_counter() -> None:
    shape, apex, angles, radii = FANS["phased"]
    truth = fan_mask(shape, apex, angles, radii)
    # A depth label straddling the right edge, static, and a frame counter far from the fan, changing.
    frames = burn_text(speckle(truth, 10, seed=3), [("12 cm", (520, 260))], changing=(20, 460))
    geo = detect_sector(frames)
    assert geo.kind == "sector"
    assert np.allclose(geo.angles_deg, angles, atol=0.5)
    assert iou(geo.mask, truth) >= 0.98
    counter = np.zeros(shape, bool)
    counter[440:470, 15:80] = True
    assert not (geo.mask & counter).any()


def test_frozen_cine_with_only_a_frame_counter_moving_falls_back_to_brightness() -> None:
    shape, apex, angles, radii = FANS["curved"]
    truth = fan_mask(shape, apex, angles, radii)
    frozen = np.repeat(speckle(truth, 1, seed=7), 6, axis=0)
    geo = detect_sector(burn_text(frozen, TEXT, changing=(20, 460)))
    assert geo.kind == "sector"
    assert np.allclose(geo.angles_deg, angles, atol=0.5)
    assert iou(geo.mask, truth) >= 0.98


def test_fan_clipped_by_the_frame_like_echonet() -> None:
    """A 112x112 pre-cropped cine: apex above the frame, arc below it. The visible part is recovered."""
    shape, apex, angles, radii = (112, 112), (56.0, -8.0), (-42.0, 42.0), (14.0, 140.0)
    truth = fan_mask(shape, apex, angles, radii)
    geo = detect_sector(speckle(truth, 8, seed=4))
    assert geo.kind == "sector"
    assert np.allclose(geo.angles_deg, angles, atol=1.0)
    assert abs(geo.radii[0] - radii[0]) < 2.0
    assert iou(geo.mask, truth) >= 0.97


@pytest.mark.parametrize("cine", [False, True], ids=["image", "cine"])
@pytest.mark.parametrize("rgb", [False, True], ids=["gray", "rgb"])
def test_linear_probe_rectangle(cine: bool, rgb: bool) -> None:
    shape, box = (480, 640), (90, 70, 560, 430)
    truth = np.zeros(shape, bool)
    truth[box[1] : box[3], box[0] : box[2]] = True
    frames = burn_text(speckle(truth, 10 if cine else 1, seed=5), TEXT)
    text = (frames[0] == 255) & ~truth
    geo = detect_sector(as_input(frames, cine, rgb))
    assert geo.kind == "linear"
    assert geo.apex is None and geo.angles_deg is None and geo.radii is None
    assert geo.bbox == box
    assert not (geo.mask & text).any()


def test_render_sector_agrees_with_opencv_polygon() -> None:
    shape, apex, angles, radii = FANS["curved"]
    assert iou(render_sector(shape, apex, angles, radii), fan_mask(shape, apex, angles, radii)) >= 0.995


# ------------------------------------------------------------------------------------------ real files


def fan_truth(shape, apex, angles, radii) -> np.ndarray:
    return fan_mask(shape, apex, angles, radii)


def static_overlay(gray: np.ndarray) -> np.ndarray:
    """Pixels that are bright yet never change over the cine: burned-in text, icons, the toolbar."""
    return (gray.max(axis=0) > 60) & (gray.astype(np.float32).std(axis=0) == 0)


# examples_ybr_color.dcm is the 640x480 four-chamber cine of color3d_jpeg_baseline.dcm stored at 320x240.
# Hand measurements on the full-resolution cine (max over frames): right edge crosses rows 60/100/140/180 at
# x = 377.5/414.5/451.5/488.5, left edge rows 60/100/140 at x = 300.5/263.5/226.5 -> slopes +-0.925 (42.8 deg),
# apex (339.0, 18.4); column 339 starts at row 44.5 and ends at row 402.5 -> radii 26.1 and 384.1.
FULL_TRUTH = dict(apex=(339.0, 18.4), angles=(-42.8, 42.8), radii=(26.1, 384.1))
# The same fan in the half-size file: x_half = (x + 0.5) / 2 - 0.5, lengths halve. Checked on the half-size file
# directly: column 169 starts at row 22 and ends at 201, the right edge crosses row 30 at x = 189.5.
HALF_TRUTH = dict(apex=(169.25, 8.95), angles=(-42.8, 42.8), radii=(13.05, 192.05))


def _assert_matches(geo, truth, shape, *, apex_tol, angle_tol, radius_tol, min_iou):
    assert geo.kind == "sector"
    assert np.hypot(geo.apex[0] - truth["apex"][0], geo.apex[1] - truth["apex"][1]) < apex_tol
    assert np.allclose(geo.angles_deg, truth["angles"], atol=angle_tol)
    assert np.allclose(geo.radii, truth["radii"], atol=radius_tol)
    expected = fan_truth(shape, truth["apex"], truth["angles"], truth["radii"])
    assert iou(geo.mask, expected) >= min_iou
    ys, xs = np.nonzero(expected)
    assert np.allclose(geo.bbox, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), atol=4)


def test_real_echo_cine_half_size(ybr_dicom) -> None:
    frames = pydicom.dcmread(ybr_dicom).pixel_array  # (30, 240, 320, 3) RGB
    assert frames.shape == (30, 240, 320, 3)
    geo = detect_sector(frames)
    _assert_matches(geo, HALF_TRUTH, (240, 320), apex_tol=2.0, angle_tol=1.0, radius_tol=2.0, min_iou=0.96)
    summary = geo.as_dict()
    assert summary["kind"] == "sector" and summary["bbox"] == list(geo.bbox) and "mask" not in summary
    overlay = static_overlay(frames.max(axis=-1))
    assert overlay.sum() > 1000  # "PLA Gen THI", the right-hand column, the toolbar, "19"
    assert (geo.mask & overlay).sum() == 0
    assert 0.33 < geo.area_frac < 0.40


def test_real_echo_cine_full_resolution() -> None:
    # From pydicom-data; 16 of the 120 frames, decoded one by one (the whole cine takes seconds to decode).
    frames = np.stack(list(itertools.islice(iter_pixels(get_testdata_file("color3d_jpeg_baseline.dcm")), 16)))
    assert frames.shape == (16, 480, 640, 3)
    geo = detect_sector(frames)
    _assert_matches(geo, FULL_TRUTH, (480, 640), apex_tol=2.0, angle_tol=0.5, radius_tol=2.0, min_iou=0.98)
    assert (geo.mask & static_overlay(frames.max(axis=-1))).sum() == 0


def test_real_single_frame_echo_with_dark_cavities() -> None:
    """1024x768 phased-array frame: most of the fan's interior is exactly 0, only the fit recovers it.

    Hand measurements: left edge crosses rows 200/260/320/380/440 at x = 400.5/345.5/290.5/234.5/179.5 (slope
    -0.921, -42.6 deg), right edge at 632.5/694.5/755.5/815.5/876.5 (slope 1.017, 45.5 deg), apex
    (510.8, 80.3); the far field fades out 580-591 px from the apex (taken as 585). The top is flat, at row 167.
    """
    img = pydicom.dcmread(get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm")).pixel_array
    assert img.shape == (768, 1024)
    geo = detect_sector(img)
    assert geo.kind == "sector"
    assert np.hypot(geo.apex[0] - 510.8, geo.apex[1] - 80.3) < 3.0
    assert np.allclose(geo.angles_deg, (-42.6, 45.5), atol=0.7)
    assert abs(geo.radii[1] - 585) < 6
    truth = fan_mask(img.shape, (510.8, 80.3), (-42.6, 45.5), (0.0, 585.0))
    truth[:167] = False
    assert iou(geo.mask, truth) >= 0.95
    # Everything lit more than 6 px outside the true fan is overlay: text, ECG, grey bar, caliper, "65bpm".
    outside = (img > 0) & ~cv2.dilate(truth.view(np.uint8), np.ones((13, 13), np.uint8)).astype(bool)
    assert outside.sum() > 10000
    assert (geo.mask & outside).sum() <= 0.002 * outside.sum()


def test_real_curved_array_frame_with_faint_fan() -> None:
    """800x600 Philips curved-array OB frame: a water-filled fan barely above black (grey level 1).

    Hand measurements (palette applied): the left edge crosses rows 120/200/300/400 at x = 326.5/271.5/202.5/
    133.5 (slope -0.689, -34.6 deg); row 300 spans 202.5-716.5 so the axis is x = 459.5 and the apex (459.5,
    -73.0); column 460 runs from row 97 to row 516 -> radii 169.5 and 589.5.
    """
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    rgb = (apply_color_lut(ds.pixel_array, ds) >> 8).astype(np.uint8)
    truth = dict(apex=(459.5, -73.0), angles=(-34.6, 34.6), radii=(169.5, 589.5))
    geo = detect_sector(rgb)
    _assert_matches(geo, truth, (600, 800), apex_tol=2.0, angle_tol=0.5, radius_tol=2.0, min_iou=0.98)
    text = np.zeros((600, 800), bool)
    text[:62] = True  # the Philips header bar with date and time (the fan starts at row 67)
    text[80:330, :110] = True  # the "Gen OB C5-1 ..." column
    assert not (geo.mask & text).any()


def test_real_linear_probe_frame() -> None:
    """GE linear-array power-Doppler frame. Hand measurements: columns 100/300/500 are lit from row 108 to 336,
    rows 120/300/330 from column 14 to 622 (colour scales overlap both sides)."""
    img = pydicom.dcmread(get_testdata_file("US1_UNCI.dcm")).pixel_array
    geo = detect_sector(img)
    assert geo.kind == "linear"
    assert np.allclose(geo.bbox, (14, 108, 623, 337), atol=1)
    header = np.zeros(img.shape[:2], bool)
    header[:100] = True  # "BAPTIST MED CTR ...", scanner settings
    header[350:] = True  # "LYMPH NODE", scale bar, "TIS<0.4 ..."
    assert not (geo.mask & header).any()


# ---------------------------------------------------------------------------------------- real HC18 images


def _corner_marks(img: np.ndarray) -> np.ndarray:
    """The grey-scale bar and the text box at the top left, where they stand apart from the fan."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((img > 0).view(np.uint8), connectivity=8)
    fan = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    ids = [
        i
        for i in range(1, n)
        if i != fan and stats[i, 0] + stats[i, 2] <= 80 and stats[i, 1] + stats[i, 3] <= 200
    ]
    return np.isin(labels, ids)


def test_real_hc18_fetal_heads(hc18_dir) -> None:
    paths = sorted((hc18_dir / "images").glob("*_HC.png"))[::15][:20]
    assert len(paths) == 20
    kinds, areas, marked = [], [], 0
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (540, 800)
        geo = detect_sector(img)
        kinds.append(geo.kind)
        areas.append(geo.area_frac)
        marks = _corner_marks(img)
        marked += bool(marks.any())
        assert not (geo.mask & marks).any(), path.name  # grey bar and text stay outside
        head = cv2.imread(str(path).replace("_HC.png", "_HC_Annotation.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert geo.mask[head].mean() >= 0.98, path.name  # the sonographer's head ellipse lies inside
        assert geo.mask[(img > 0) & ~marks].mean() >= 0.98, path.name  # and the fan's lit pixels inside
    assert marked >= 10
    assert kinds.count("sector") >= 10  # curved-array fans, many clipped by the display window
    assert 0.45 <= min(areas) and max(areas) <= 0.99
    assert 0.80 <= float(np.median(areas)) <= 0.95


# ------------------------------------------------------------------------------------------------ errors


def test_blank_and_text_only_frames_are_rejected() -> None:
    with pytest.raises(InputError, match="no ultrasound imaging region"):
        detect_sector(np.zeros((240, 320), np.uint8))
    screen = burn_text(np.zeros((1, 240, 320), np.uint8), TEXT[:2])[0]
    with pytest.raises(InputError, match="no ultrasound imaging region"):
        detect_sector(screen)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 4, 4, 4), np.uint8),
        np.zeros((10, 10), np.float32),
        np.zeros((0, 10), np.uint8),
        np.zeros((20, 20, 4), np.uint8),
        [[1]],
    ],
    ids=["5d", "float", "empty", "rgba", "list"],
)
def test_bad_input_raises_input_error(bad) -> None:
    with pytest.raises(InputError):
        detect_sector(bad)


def test_apply_mask_keeps_shape_and_dtype_and_zeroes_outside() -> None:
    shape, apex, angles, radii = FANS["phased"]
    truth = fan_mask(shape, apex, angles, radii)
    frames = burn_text(speckle(truth, 3, seed=6), TEXT)
    geo = detect_sector(frames)
    for x in (frames, frames[0], as_input(frames, True, True), as_input(frames, False, True)):
        out = apply_mask(x, geo)
        assert out.shape == x.shape and out.dtype == x.dtype
        pixels = (lambda a, m: a[..., m, :]) if x.shape[-1] == 3 else (lambda a, m: a[..., m])
        assert pixels(out, ~geo.mask).max() == 0
        assert np.array_equal(pixels(out, geo.mask), pixels(x, geo.mask))
    with pytest.raises(InputError, match="geometry is for"):
        apply_mask(frames[:, :100], geo)


def test_fill_holes_matches_scipy() -> None:
    from scipy import ndimage

    from sonokit.preprocess.sector import fill_holes

    rng = np.random.default_rng(0)
    for density in (0.3, 0.55, 0.7):
        m = rng.random((60, 80)) < density
        assert np.array_equal(fill_holes(m), ndimage.binary_fill_holes(m))
