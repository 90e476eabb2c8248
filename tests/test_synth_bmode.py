"""Image formation physics: speckle statistics, PSF variants, gain curves, shadows, scan conversion."""

from __future__ import annotations

import numpy as np
import pytest

from sonokit.synth import Acquisition, BModeRenderer, ProbeGeometry, Tissue, render_bmode
from sonokit.synth.bmode import NoisePool, ar1_step, complex_noise, warp_scatter
from sonokit.synth.scan import beam_grid, beam_index, scan_converter

SECTOR = ProbeGeometry(kind="sector", depth_mm=150.0, angle_deg=75.0)


def _amplitude(iq: np.ndarray) -> np.ndarray:
    return np.hypot(iq[..., 0], iq[..., 1])


def test_fully_developed_speckle_is_rayleigh():
    r = BModeRenderer(SECTOR, Acquisition(), 112)
    amp = _amplitude(r.psf(r.new_scatter(np.random.default_rng(1))))
    # Rayleigh amplitude: mean / std = sqrt(pi / (4 - pi)) = 1.913; unit-energy PSF keeps E|s|^2 = 1
    assert amp.mean() / amp.std() == pytest.approx(1.913, rel=0.08)
    assert (amp**2).mean() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fft_and_separable_psf_agree(dtype):
    acq = Acquisition(pulse_freq=0.17, axial_sigma=1.1, lateral_sigma=1.4)
    sep = BModeRenderer(SECTOR, acq, 112, dtype=dtype)
    fft = BModeRenderer(SECTOR, acq, 112, method="fft", dtype=dtype)
    field = sep.new_scatter(np.random.default_rng(2))
    a, b = sep.psf(field), fft.psf(field)
    assert np.abs(a - b).max() < 1e-4 * np.abs(a).max()


def test_tgc_compensates_attenuation():
    grid_shape = BModeRenderer(SECTOR, Acquisition(), 112).grid.shape
    tissue = Tissue(echo=np.full(grid_shape, 0.3, dtype=np.float32))

    def thirds(acq: Acquisition) -> tuple[float, float]:
        r = BModeRenderer(SECTOR, acq, 112)
        rng = np.random.default_rng(3)
        img = np.mean([r.beam_image(tissue, r.new_scatter(rng), rng) for _ in range(4)], axis=0)
        n = img.shape[0] // 3
        return float(img[5:n].mean()), float(img[-n:].mean())

    top, bottom = thirds(Acquisition(atten_db_cm=1.5, tgc_db_cm=1.5, noise_db=-80))
    assert abs(top - bottom) < 0.03  # matched TGC: flat brightness with depth
    top, bottom = thirds(Acquisition(atten_db_cm=1.5, tgc_db_cm=0.0, noise_db=-80, dynamic_range_db=60))
    # 1.5 dB/cm over ~10 cm between the thirds' centres on a 60 dB scale: ~0.25 darker
    assert top - bottom == pytest.approx(1.5 * 10 / 60, abs=0.06)


def test_absorber_casts_a_shadow():
    r = BModeRenderer(SECTOR, Acquisition(noise_db=-80), 112)
    g = r.grid
    echo = np.full(g.shape, 0.3, dtype=np.float32)
    absorb = np.zeros(g.shape, dtype=np.float32)
    cols = slice(g.n_l // 2 - 10, g.n_l // 2 + 10)
    row = g.n_r // 3
    absorb[row : row + 3, cols] = 1.0  # ~3 nepers per mm over ~3 mm: a bone
    rng = np.random.default_rng(4)
    img = r.beam_image(Tissue(echo=echo, absorb=absorb), r.new_scatter(rng), rng)
    behind = img[row + 10 :, cols].mean()
    beside = img[row + 10 :, : g.n_l // 4].mean()
    assert behind < 0.5 * beside


def test_ar1_decorrelation_and_warp_keep_unit_power():
    rng = np.random.default_rng(5)
    s0 = complex_noise(rng, (200, 160))
    pool = NoisePool(rng, (200, 160))
    s1 = ar1_step(s0, rng, 0.8, pool)
    corr = np.mean(s0 * s1) / np.sqrt(np.mean(s0**2) * np.mean(s1**2))
    assert corr == pytest.approx(0.8, abs=0.03)
    assert np.mean(s1**2) * 2 == pytest.approx(1.0, rel=0.05)
    rows, cols = np.mgrid[0:200, 0:160].astype(np.float32)
    warped = warp_scatter(s0, rows + 0.5, cols + 0.5)  # half-sample shift: worst case for interpolation
    assert np.mean(warped[2:-2, 2:-2] ** 2) * 2 == pytest.approx(1.0, rel=0.05)


def test_scan_conversion_fan_and_index_roundtrip():
    conv = scan_converter(SECTOR, 140, 112, 112)
    frames = render_bmode(geom=SECTOR, size=112, n_frames=1, seed=0)
    assert (frames[0][~conv.fan] == 0).all()
    assert 0.35 < conv.fan.mean() < 0.8
    # the apex is at the top centre: only the middle of row 0 can be inside
    assert not conv.fan[0, :40].any() and not conv.fan[0, -40:].any()
    g = beam_grid(SECTOR, 140, 112)
    row, col = beam_index(SECTOR, 140, 112, g.x[70:90, 20:30], g.z[70:90, 20:30])
    assert np.allclose(row, np.arange(70, 90)[:, None], atol=1e-3)
    assert np.allclose(col, np.arange(20, 30)[None, :], atol=1e-3)
    linear = scan_converter(ProbeGeometry(kind="linear", depth_mm=40, width_mm=40), 160, 128, 128)
    assert linear.fan.mean() > 0.95  # a square field of view fills a square image


def test_render_bmode_is_deterministic_and_speckle_evolves():
    a = render_bmode(n_frames=3, seed=9)
    b = render_bmode(n_frames=3, seed=9)
    c = render_bmode(n_frames=3, seed=10)
    assert a.shape == (3, 112, 112) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    fan = a[0] > 0
    corr = np.corrcoef(a[0][fan].astype(float), a[1][fan].astype(float))[0, 1]
    assert 0.5 < corr < 0.99
    # the calibration phantom's anechoic cyst (radius 12 mm, ~7 px) is darker than the tissue beside it
    conv = scan_converter(SECTOR, 140, 112, 112)
    col, row = (int(round(float(v))) for v in conv.frame.to_px(-0.15 * 150, 0.45 * 150))
    cyst = a[:, row - 3 : row + 4, col - 3 : col + 4].mean()
    beside = a[:, row - 3 : row + 4, col + 12 : col + 19].mean()
    assert cyst < 0.5 * beside
