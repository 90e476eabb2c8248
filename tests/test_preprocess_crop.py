"""crop_square / CropTransform: aspect ratio kept, exact point mapping both ways, every layout and dtype."""

from __future__ import annotations

import cv2
import numpy as np
import pydicom
import pytest

from sonokit.errors import InputError
from sonokit.preprocess import CropTransform, SectorGeometry, crop_square, preprocess_cine, render_sector
from sonokit.preprocess.sector import mask_bbox


def rect_geometry(shape, bbox) -> SectorGeometry:
    mask = np.zeros(shape, bool)
    mask[bbox[1] : bbox[3], bbox[0] : bbox[2]] = True
    return SectorGeometry("linear", mask, bbox)


def fan_geometry(shape=(480, 640), apex=(320.0, 20.0), angles=(-40.0, 40.0), radii=(20.0, 420.0)):
    mask = render_sector(shape, apex, angles, radii)
    return SectorGeometry("sector", mask, mask_bbox(mask), apex, angles, radii)


def centroid(img: np.ndarray) -> np.ndarray:
    m = cv2.moments(img.astype(np.float32))
    return np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]])


def test_round_trip_is_exact() -> None:
    t = CropTransform(
        x0=37, y0=12, scale=112 / 523, pad_x=0.0, pad_y=77.0, size=112, original_shape=(480, 640)
    )
    pts = np.random.default_rng(0).uniform([0, 0], [640, 480], size=(200, 2))
    assert np.abs(t.to_original(t.to_crop(pts)) - pts).max() < 1e-9
    assert np.abs(t.to_crop(t.to_original(pts)) - pts).max() < 1e-9
    assert t.to_crop(pts).shape == (200, 2)


@pytest.mark.parametrize("bbox", [(50, 100, 610, 380), (200, 20, 400, 470)], ids=["wide", "tall"])
def test_circle_stays_a_circle_and_padding_is_centred(bbox) -> None:
    shape = (480, 640)
    img = np.zeros(shape, np.uint8)
    centre, r = ((bbox[0] + bbox[2]) // 2, (bbox[1] + bbox[3]) // 2), 80
    cv2.circle(img, centre, r, 255, -1)
    out, t = crop_square(img, rect_geometry(shape, bbox), 128)

    side = max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    assert out.shape == (128, 128) and t.scale == pytest.approx(128 / side)
    m = cv2.moments(out.astype(np.float32))
    mu20, mu02 = m["mu20"] / m["m00"], m["mu02"] / m["m00"]
    assert mu20 / mu02 == pytest.approx(1.0, abs=0.02)  # round, not stretched into an ellipse
    radius_out = np.sqrt(out.sum() / 255 / np.pi)
    assert radius_out == pytest.approx(r * t.scale, rel=0.02)
    assert np.allclose(centroid(out), t.to_crop(np.array([centre], float))[0], atol=0.5)
    # The short side is padded with zeros, equally on both sides; the long side fills the square.
    filled, _ = crop_square(np.full(shape, 50, np.uint8), rect_geometry(shape, bbox), 128)
    rows, cols = np.flatnonzero(filled.any(axis=1)), np.flatnonzero(filled.any(axis=0))
    for lit, n in ((cols, bbox[2] - bbox[0]), (rows, bbox[3] - bbox[1])):
        before, after = lit[0], 127 - lit[-1]
        assert abs(before - after) <= 1
        assert lit.size == pytest.approx(n * t.scale, abs=1.5)


def test_points_map_onto_the_pixels_they_mark() -> None:
    """Blobs drawn at known original positions land where to_crop says, within half an output pixel."""
    geo = fan_geometry()
    centres = np.array([[320, 200], [150, 300], [480, 330], [320, 420], [250, 120]], float)
    for c in centres:
        assert geo.mask[int(c[1]), int(c[0])]
    for interpolation in (cv2.INTER_AREA, cv2.INTER_LINEAR):
        outs = []
        for c in centres:
            img = np.zeros((480, 640), np.float32)
            cv2.circle(img, (int(c[0]), int(c[1])), 12, 1.0, -1)
            out, t = crop_square(img, geo, 112, interpolation)
            outs.append(centroid(out))
        assert np.abs(np.array(outs) - t.to_crop(centres)).max() < 0.5
        assert np.abs(t.to_original(np.array(outs)) - centres).max() < 0.5 / t.scale


def test_everything_outside_the_fan_is_blanked() -> None:
    geo = fan_geometry()
    frames = np.full((3, 480, 640, 3), 200, np.uint8)  # text everywhere, fan included
    out, t = crop_square(frames, geo, 112, cv2.INTER_NEAREST)
    yy, xx = np.mgrid[:112, :112]
    src = np.rint(t.to_original(np.stack([xx.ravel(), yy.ravel()], 1))).astype(int)
    in_frame = (src[:, 0] >= 0) & (src[:, 0] < 640) & (src[:, 1] >= 0) & (src[:, 1] < 480)
    src = np.clip(src, 0, [639, 479])

    def where(mask: np.ndarray) -> np.ndarray:  # output pixels whose source pixel lies in `mask`
        return (mask[src[:, 1], src[:, 0]] & in_frame).reshape(112, 112)

    kernel = np.ones((11, 11), np.uint8)
    far_outside = where(~cv2.dilate(geo.mask.view(np.uint8), kernel).astype(bool)) | ~in_frame.reshape(
        112, 112
    )
    deep_inside = where(cv2.erode(geo.mask.view(np.uint8), kernel).astype(bool))
    assert far_outside.sum() > 2000 and deep_inside.sum() > 4000
    assert out[:, far_outside].max() == 0
    assert (out[:, deep_inside] == 200).all()


@pytest.mark.parametrize(
    "shape, out_shape",
    [
        ((480, 640), (64, 64)),
        ((480, 640, 3), (64, 64, 3)),
        ((5, 480, 640), (5, 64, 64)),
        ((5, 480, 640, 3), (5, 64, 64, 3)),
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.uint16])
def test_layouts_and_dtypes(shape, out_shape, dtype) -> None:
    geo = fan_geometry()
    x = (np.random.default_rng(1).random(shape) * 200).astype(dtype)
    out, t = crop_square(x, geo, 64)
    assert out.shape == out_shape and out.dtype == np.dtype(dtype)
    assert t.size == 64 and t.original_shape == (480, 640)
    assert (t.x0, t.y0) == geo.bbox[:2]


def test_bool_masks_crop_with_nearest() -> None:
    geo = fan_geometry()
    out, _ = crop_square(geo.mask, geo, 112, cv2.INTER_NEAREST)
    assert out.dtype == np.bool_ and out.shape == (112, 112)
    frac = geo.mask.sum() / ((geo.bbox[2] - geo.bbox[0]) * (geo.bbox[2] - geo.bbox[0]))
    assert out.mean() == pytest.approx(frac, abs=0.02)


def test_no_resize_when_the_box_is_already_the_size() -> None:
    geo = rect_geometry((200, 200), (50, 60, 150, 160))
    img = np.arange(200 * 200, dtype=np.float32).reshape(200, 200)
    out, t = crop_square(img, geo, 100)
    assert t.scale == 1.0 and np.array_equal(out, img[60:160, 50:150])


def test_preprocess_cine_on_the_real_echo(ybr_dicom) -> None:
    frames = pydicom.dcmread(ybr_dicom).pixel_array
    out, geo, t = preprocess_cine(frames, size=112)
    assert out.shape == (30, 112, 112, 3) and out.dtype == np.uint8
    assert geo.kind == "sector" and t.size == 112
    # The fan is wider than tall: it fills the width, and the apex maps to the top centre.
    apex = t.to_crop(np.array([geo.apex]))[0]
    assert abs(apex[0] - 55.5) < 1.5
    assert out[:, :, 0].max() > 0 and out[:, :, -1].max() > 0
    assert out[:, :3, :10].max() == 0 and out[:, :3, -10:].max() == 0  # corners beside the apex are blank
    # The geometry is reused as given (no second detection): blank frames crop without complaint.
    again, geo2, _ = preprocess_cine(np.zeros_like(frames), 112, geometry=geo)
    assert geo2 is geo and again.max() == 0


def test_crop_errors() -> None:
    geo = fan_geometry()
    with pytest.raises(InputError, match="positive"):
        crop_square(np.zeros((480, 640), np.uint8), geo, 0)
    with pytest.raises(InputError, match="geometry is for"):
        crop_square(np.zeros((240, 320), np.uint8), geo, 64)
    with pytest.raises(InputError, match="got int32"):
        crop_square(np.zeros((480, 640), np.int32), geo, 64)
    empty = SectorGeometry("region", np.zeros((480, 640), bool), (0, 0, 0, 0))
    with pytest.raises(InputError, match="empty bounding box"):
        crop_square(np.zeros((480, 640), np.uint8), empty, 64)
