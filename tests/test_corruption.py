"""Corruptions: identity at zero, seeded determinism, SSIM severity, and agreement with independent references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity
from skimage.morphology import disk

from sonokit.augment.corruption import CORRUPTIONS, corrupt, get_corruption, intensity_grid, ssim
from sonokit.errors import InputError

RANDOM = ("gaussian_noise", "speckle", "motion_blur", "shadow")


@pytest.fixture(scope="module")
def real_image(hc18_dir) -> np.ndarray:
    """A real 800 x 540 HC18 fetal head image."""
    image = cv2.imread(str(hc18_dir / "images" / "010_HC.png"), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape == (540, 800)
    return image


@pytest.fixture(scope="module")
def textured() -> np.ndarray:
    """A speckle-like synthetic image (smoothed noise) for tests that do not need anatomy."""
    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.random((96, 128)), 1.5)
    return np.clip((field - field.min()) / np.ptp(field) * 255, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_zero_intensity_is_identity(name, textured):
    for image in (textured, np.dstack([textured, textured[::-1], textured[:, ::-1]])):
        out, score = corrupt(image, name, 0.0, seed_or_rng=1)
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert np.array_equal(out, image) and out is not image
        assert score == 1.0


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_same_seed_same_image_and_shape_kept(name, textured):
    c = get_corruption(name)
    mid = 0.5 * c.intensity_range[1]
    a, sa = corrupt(textured, name, mid, 42)
    b, sb = corrupt(textured, name, mid, 42)
    assert np.array_equal(a, b) and sa == sb
    assert a.shape == textured.shape and a.dtype == np.uint8
    assert not np.array_equal(a, textured)
    assert 0.0 < sa < 1.0
    rgb = np.dstack([textured] * 3)
    out = c.apply(rgb, mid, np.random.default_rng(0))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    if name in RANDOM:
        other, _ = corrupt(textured, name, mid, 43)
        assert not np.array_equal(a, other)


@pytest.mark.shared
def test_ssim_falls_monotonically_on_a_real_image(real_image):
    """Six evenly spaced intensities, 0 to saturation: SSIM strictly decreasing for every corruption but JPEG.

    JPEG is the documented exception: on dark ultrasound backgrounds the DC rounding of libjpeg's quality tables
    makes SSIM non-monotone in quality (e.g. q=62 scores lower than q=43), so it is checked at its ends only.
    """
    small = cv2.resize(real_image, (400, 270), interpolation=cv2.INTER_AREA)  # real anatomy, half the time
    for name in CORRUPTIONS:
        scores = [corrupt(small, name, t, 7)[1] for t in intensity_grid(name, 5)]
        assert scores[0] == 1.0
        if name == "jpeg":
            assert scores[-1] < min(scores[1:-1]) < 1.0, scores
            continue
        diffs = np.diff(scores)
        assert (diffs < 0).all(), f"{name}: SSIM not decreasing: {np.round(scores, 4)}"
        assert scores[-1] < 0.97, f"{name}: saturation barely changes the image: {scores[-1]:.3f}"


@pytest.mark.shared
def test_paper_thresholds_on_a_real_image(real_image):
    """At the study's thresholds the corruptions are visible but moderate on a real full-size frame."""
    expect = {"scale_up": (0.4, 0.95), "median_blur": (0.9, 0.999), "gaussian_noise": (0.01, 0.3)}
    for name, (lo, hi) in expect.items():
        c = get_corruption(name)
        _, score = corrupt(real_image, name, c.paper_threshold, 0)
        assert lo < score < hi, f"{name} at {c.paper_threshold}: SSIM {score:.3f}"


def test_scale_up_matches_crop_and_resize(textured):
    """Independent reference: crop the centred half by slicing and resize back with cv2.resize."""
    image = cv2.resize(textured, (200, 100), interpolation=cv2.INTER_LINEAR)
    out, _ = corrupt(image, "scale_up", 0.5, 0)
    ref = cv2.resize(image[25:75, 50:150], (200, 100), interpolation=cv2.INTER_LINEAR)
    diff = np.abs(out.astype(int) - ref.astype(int))[2:-2, 2:-2]
    assert diff.max() <= 1


def test_median_blur_integer_radius_matches_scipy(textured):
    out, _ = corrupt(textured, "median_blur", 3.0, 0)
    ref = ndimage.median_filter(textured, footprint=disk(3))
    assert np.array_equal(out[4:-4, 4:-4], ref[4:-4, 4:-4])


def test_median_blur_fractional_radius_blends_neighbours(textured):
    lo, _ = corrupt(textured, "median_blur", 2.0, 0)
    hi, _ = corrupt(textured, "median_blur", 3.0, 0)
    mid, _ = corrupt(textured, "median_blur", 2.25, 0)
    ref = np.rint(0.75 * lo.astype(float) + 0.25 * hi.astype(float))
    assert np.abs(mid.astype(float) - ref).max() <= 1


def test_gaussian_noise_sigma_is_on_unit_scale():
    grey = np.full((200, 200), 128, np.uint8)
    out, _ = corrupt(grey, "gaussian_noise", 0.1, 5)
    residual = out.astype(float) - 128
    assert abs(residual.std() / 255 - 0.1) < 0.003
    assert abs(residual.mean()) < 1.0
    clipped, _ = corrupt(grey, "gaussian_noise", 2.0, 5)
    assert clipped.min() == 0 and clipped.max() == 255  # clipped, not wrapped


def test_speckle_is_multiplicative():
    image = np.zeros((64, 64), np.uint8)
    image[:, 32:] = 100
    out, _ = corrupt(image, "speckle", 0.5, 0)
    assert out[:, :32].max() == 0  # black stays black
    assert abs(out[:, 32:].mean() - 100) < 4 and out[:, 32:].std() > 40


def test_gain_contrast_and_jpeg_semantics(textured):
    dark, _ = corrupt(textured, "gain_loss", 0.5, 0)
    assert np.abs(dark.astype(float) - textured / 2).max() <= 0.5 + 1e-9
    flat, _ = corrupt(textured, "contrast_loss", 0.5, 0)
    assert abs(flat.std() - textured.std() / 2) < 1.0 and abs(flat.mean() - textured.mean()) < 1.0
    ok, buf = cv2.imencode(".jpg", textured, [cv2.IMWRITE_JPEG_QUALITY, 30])
    jpeg, _ = corrupt(textured, "jpeg", 0.7, 0)
    assert ok and np.array_equal(jpeg, cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))


def test_shadow_darkens_a_wedge_below_its_onset(textured):
    bright = np.full((200, 200), 200, np.uint8)
    out, _ = corrupt(bright, "shadow", 1.0, 3)
    assert out[:30].min() == 200  # nothing above the shallowest onset (20% depth)
    assert out.min() == 0  # full strength: no echo at the wedge's core
    assert 0.02 < (out < 200).mean() < 0.5
    half, _ = corrupt(bright, "shadow", 0.5, 3)
    loss_full, loss_half = 200 - out.astype(float), 200 - half.astype(float)
    assert half.min() == 100 and np.abs(loss_half - loss_full / 2).max() <= 1  # same wedge, half the loss


def test_reported_ssim_is_skimage_ssim(textured):
    out, score = corrupt(textured, "motion_blur", 9.0, 2)
    assert score == pytest.approx(structural_similarity(textured, out, data_range=255), abs=1e-12)
    assert ssim(textured, textured) == pytest.approx(1.0)


def test_bad_input_is_a_one_line_error(textured):
    with pytest.raises(InputError, match="unknown corruption 'fog'"):
        corrupt(textured, "fog", 0.1, 0)
    with pytest.raises(InputError, match="intensity must be"):
        corrupt(textured, "blur", -1, 0)
    with pytest.raises(InputError, match="uint8"):
        corrupt(textured.astype(np.float32), "noise", 0.1, 0)
    with pytest.raises(InputError, match="fraction"):
        corrupt(textured, "scale_up", 1.0, 0)
    assert get_corruption("blur").name == "median_blur" and get_corruption("noise").name == "gaussian_noise"
