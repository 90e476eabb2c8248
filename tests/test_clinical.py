"""Simpson's method, EF and heart-function classes against analytic answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonokit.clinical import (
    PRESETS,
    Band,
    EFThresholds,
    ejection_fraction,
    heart_function_class,
    rasterize_tracing,
    tracing_from_mask,
    volume_from_mask,
    volume_from_tracing,
)
from sonokit.errors import InputError


def ellipse_tracing(
    a: float, b: float, center=(60.0, 50.0), angle_deg: float = 0.0, n: int = 20
) -> np.ndarray:
    """Long axis of length 2a and n chords of an ellipse (semi-axes a along the axis, b across)."""
    t = math.radians(angle_deg)
    axis = np.array([math.cos(t), math.sin(t)])
    normal = np.array([-axis[1], axis[0]])
    c = np.asarray(center)
    rows = [np.concatenate([c - a * axis, c + a * axis])]
    for i in range(n):
        u = -a + (i + 0.5) * 2 * a / n
        half = b * math.sqrt(1 - (u / a) ** 2)
        rows.append(np.concatenate([c + u * axis + half * normal, c + u * axis - half * normal]))
    return np.asarray(rows)


def ellipse_mask(a: float, b: float, angle_deg: float, shape=(128, 128), center=(64.3, 61.7)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    t = math.radians(angle_deg)
    u = (xx - center[0]) * math.cos(t) + (yy - center[1]) * math.sin(t)
    v = -(xx - center[0]) * math.sin(t) + (yy - center[1]) * math.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def test_tracing_volume_matches_discs_formula():
    lines = ellipse_tracing(30.0, 12.0)
    lengths = np.hypot(lines[:, 2] - lines[:, 0], lines[:, 3] - lines[:, 1])
    expected = np.sum(np.pi / 4 * lengths[1:] ** 2) * lengths[0] / 20
    assert volume_from_tracing(lines) == pytest.approx(expected, rel=1e-12)
    # midpoint discs of an ellipse: within 0.2 % of the ellipsoid of revolution
    assert volume_from_tracing(lines) == pytest.approx(4 / 3 * np.pi * 30 * 12**2, rel=2e-3)


def test_tracing_volume_is_orientation_invariant():
    rng = np.random.default_rng(0)
    lines = ellipse_tracing(28.0, 11.0)
    v0 = volume_from_tracing(lines)
    for _ in range(10):
        t = rng.uniform(0, 2 * np.pi)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        shift = rng.uniform(-40, 40, size=2)
        p1 = lines[:, :2] @ rot.T + shift
        p2 = lines[:, 2:] @ rot.T + shift
        assert volume_from_tracing(np.concatenate([p1, p2], axis=1)) == pytest.approx(v0, rel=1e-9)


def test_tracing_units_and_anisotropic_spacing():
    lines = ellipse_tracing(30.0, 10.0)
    v_px = volume_from_tracing(lines)
    assert volume_from_tracing(lines, spacing_mm=0.5) == pytest.approx(v_px * 0.125 / 1000, rel=1e-12)
    # (row, column) spacing: scaling coordinates by hand must agree
    sy, sx = 0.4, 0.7
    scaled = lines * np.array([sx, sy, sx, sy])
    assert volume_from_tracing(lines, spacing_mm=(sy, sx)) == pytest.approx(
        volume_from_tracing(scaled) / 1000, rel=1e-12
    )


@pytest.mark.parametrize(
    "bad",
    [np.zeros((21, 3)), np.zeros((1, 4)), np.full((21, 4), np.nan), np.zeros(84)],
)
def test_tracing_rejects_bad_input(bad):
    with pytest.raises(InputError):
        volume_from_tracing(bad)


def test_spacing_must_be_positive():
    with pytest.raises(InputError):
        volume_from_tracing(ellipse_tracing(10, 5), spacing_mm=0.0)


@pytest.mark.parametrize("a,b,angle", [(40, 15, 0), (35, 20, 30), (30, 18, 77), (45, 22, 135)])
def test_mask_volume_matches_ellipsoid(a, b, angle):
    mask = ellipse_mask(a, b, angle)
    assert volume_from_mask(mask) == pytest.approx(4 / 3 * np.pi * a * b * b, rel=0.02)
    assert volume_from_mask(mask, spacing_mm=0.8) == pytest.approx(
        4 / 3 * np.pi * a * b * b * 0.8**3 / 1000, rel=0.02
    )


def test_tracing_from_mask_geometry_and_rasterize_roundtrip():
    mask = ellipse_mask(35, 15, 60)
    lines = tracing_from_mask(mask)
    assert lines.shape == (21, 4)
    axis_len = np.hypot(lines[0, 2] - lines[0, 0], lines[0, 3] - lines[0, 1])
    assert axis_len == pytest.approx(70, abs=1.5)
    # every chord perpendicular to the axis and X1 on the same side
    axis = (lines[0, 2:] - lines[0, :2]) / axis_len
    chords = lines[1:, 2:] - lines[1:, :2]
    cos = np.abs(chords @ axis) / np.linalg.norm(chords, axis=1)
    assert cos.max() < 1e-6
    side = np.sign((lines[1:, 0] - lines[0, 0]) * axis[1] - (lines[1:, 1] - lines[0, 1]) * axis[0])
    assert len(set(side.tolist())) == 1
    back = rasterize_tracing(lines, mask.shape)
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.93


def test_rasterize_tracing_handles_swapped_sides():
    lines = ellipse_tracing(30, 12, center=(64, 64), angle_deg=20)
    swapped = lines.copy()
    swapped[1::2] = swapped[1::2][:, [2, 3, 0, 1]]
    a = rasterize_tracing(lines, (128, 128))
    b = rasterize_tracing(swapped, (128, 128))
    assert a.sum() > 900
    assert (a ^ b).sum() == 0


def test_empty_mask_gives_zero_volume_but_no_tracing():
    empty = np.zeros((32, 32), dtype=bool)
    assert volume_from_mask(empty) == 0.0
    with pytest.raises(InputError):
        tracing_from_mask(empty)
    with pytest.raises(InputError):
        volume_from_mask(np.zeros((2, 3, 4)))


def test_mask_volume_uses_largest_region():
    mask = ellipse_mask(30, 14, 10)
    noisy = mask.copy()
    noisy[2:5, 2:5] = True  # a speck far away must not bend the long axis
    assert volume_from_mask(noisy) == pytest.approx(volume_from_mask(mask), rel=1e-6)


def test_ejection_fraction():
    assert ejection_fraction(120.0, 48.0) == pytest.approx(60.0)
    assert ejection_fraction(100, 100) == 0.0
    with pytest.raises(InputError):
        ejection_fraction(0.0, 10.0)
    with pytest.raises(InputError):
        ejection_fraction(float("nan"), 10.0)


@pytest.mark.parametrize(
    "preset,ef,label",
    [
        ("default", 50.01, "normal"),
        ("default", 50.0, "mildly reduced"),
        ("default", 40.0, "mildly reduced"),
        ("default", 39.99, "reduced"),
        ("aha2022", 50.0, "preserved"),
        ("aha2022", 49.99, "mildly reduced"),
        ("aha2022", 40.01, "mildly reduced"),
        ("aha2022", 40.0, "reduced"),
        ("bse", 55.0, "normal"),
        ("bse", 54.99, "borderline low"),
        ("bse", 50.0, "borderline low"),
        ("bse", 49.99, "impaired"),
        ("bse", 35.01, "impaired"),
        ("bse", 35.0, "severely impaired"),
        ("bse", 5.0, "severely impaired"),
    ],
)
def test_heart_function_class_boundaries(preset, ef, label):
    assert heart_function_class(ef, preset) == label
    assert heart_function_class(ef, PRESETS[preset]) == label


def test_presets_band_counts_and_custom_thresholds():
    assert len(PRESETS["default"].bands) == 3
    assert len(PRESETS["bse"].bands) == 4
    custom = EFThresholds("strict", normal_above=55, reduced_below=45)
    assert custom.labels == ("normal", "mildly reduced", "reduced")
    assert heart_function_class(55.5, custom) == "normal"
    assert heart_function_class(44.9, custom) == "reduced"
    banded = EFThresholds("x", 60, 30, bands=(Band("hyper", 70, False), Band("ok", 50), Band("low", 0)))
    assert heart_function_class(75, banded) == "hyper"
    assert heart_function_class(-3, banded) == "low"
    with pytest.raises(InputError):
        EFThresholds("bad", 40, 50)
    with pytest.raises(InputError):
        heart_function_class(50, "nice2025")
    with pytest.raises(InputError):
        heart_function_class(float("nan"))
