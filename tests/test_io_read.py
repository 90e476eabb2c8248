"""Reading every DICOM flavour the pydicom test data offers, videos and images, with numbers asserted."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from sonokit.errors import InputError
from sonokit.io import SUPPORTED_EXTENSIONS, find_inputs, open_cine, read_frames, write_video
from sonokit.io.dicom_meta import frame_rate, spacing_mm

FT_30 = 1000.0 / 33.333  # FrameTime 33.333 ms in the SonoSite cines


def data(name: str) -> Path:
    """A file from the pydicom wheel or the pydicom-data package (a dev dependency); fails loudly if absent."""
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not found (install pydicom-data)"
    return Path(path)


# ------------------------------------------------------------------------------------------ DICOM flavours


def test_ybr_jpeg_baseline_cine(ybr_dicom: Path) -> None:
    with open_cine(ybr_dicom) as cine:
        frames = cine.read()
        assert (cine.n_frames, cine.height, cine.width, cine.channels) == (30, 240, 320, 3)
        assert frames.shape == (30, 240, 320, 3) and frames.dtype == np.uint8
        assert cine.fps == pytest.approx(FT_30, rel=1e-6)
        assert cine.meta["fps_source"] == "FrameTime"
        assert cine.meta["photometric_interpretation"] == "YBR_FULL_422"
        assert cine.meta["transfer_syntax"] == "JPEG Baseline (Process 1)"
        assert cine.meta["manufacturer"] == "SonoSite, Inc."
        # The file was downsized from 640x480 but kept its region box: spacing must not be trusted.
        assert cine.spacing_mm is None and "outside the 320x240 image" in cine.meta["spacing_note"]
        assert cine.meta["regions"][0]["box"] == [84, 31, 595, 414]
    # Grey-scale echo: after YBR->RGB the channels agree; undecoded Cb/Cr planes would sit near 128.
    inside = frames[:, 40:200, 60:260].astype(int)
    assert np.abs(inside[..., 0] - inside[..., 1]).mean() < 3
    assert 10 < frames.mean() < 60
    # Independent decode: Pillow's plugin with pydicom's colour conversion gives the same pixels.
    reference = pydicom.pixels.pixel_array(str(ybr_dicom), index=7, decoding_plugin="pillow")
    assert np.abs(frames[7].astype(int) - reference).max() <= 1


def test_lazy_frames_match_full_read(ybr_dicom: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int | None] = []
    original = pydicom.pixels.pixel_array

    def spy(*args, **kwargs):
        calls.append(kwargs.get("index"))
        return original(*args, **kwargs)

    with open_cine(ybr_dicom) as cine:
        everything = cine.read()
        monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
        last = cine.frame(29)
        assert calls == [29]  # one frame decoded, by index: not the whole pixel data
        assert np.array_equal(last, everything[29])
        assert np.array_equal(cine.frame(-1), everything[29])
        assert np.array_equal(cine.read(3, 12, 4), everything[3:12:4])
        assert np.array_equal(np.stack(list(cine.iter_frames([20, 5]))), everything[[20, 5]])
        assert sum(1 for _ in cine) == 30
        with pytest.raises(IndexError):
            cine.frame(30)


def test_lazy_cine_holds_one_frame_not_the_cine() -> None:
    """A 120-frame 640x480 RGB cine (110 MB decoded): opening it and reading frame 100 stays far below that."""
    path = data("color3d_jpeg_baseline.dcm")
    frame_bytes = 480 * 640 * 3
    tracemalloc.start()
    try:
        with open_cine(path) as cine:
            frame = cine.frame(100)
            _, peak = tracemalloc.get_traced_memory()
            assert (cine.n_frames, frame.shape) == (120, (480, 640, 3))
            assert cine.spacing_mm == pytest.approx((0.5104970559477806, 0.5104970559477806))
            assert cine.meta["spacing_source"] == "ultrasound_region"
            assert cine.fps == pytest.approx(FT_30, rel=1e-6)
    finally:
        tracemalloc.stop()
    assert peak < 12 * frame_bytes, f"peak {peak / 1e6:.1f} MB while one frame is {frame_bytes / 1e6:.1f} MB"


def test_jpeg2000_lossless_equals_uncompressed() -> None:
    j2k, raw = read_frames(data("US1_J2KR.dcm")), read_frames(data("US1_UNCR.dcm"))
    assert j2k.shape == (1, 480, 640, 3) and j2k.dtype == np.uint8
    assert np.array_equal(j2k, raw)  # YBR_RCT -> RGB is exact for the reversible transform
    lossy = read_frames(data("US1_J2KI.dcm"))
    assert 0 < np.abs(lossy.astype(int) - raw).mean() < 3


def test_rle_equals_uncompressed_and_palette_rle() -> None:
    assert np.array_equal(read_frames(data("SC_rgb_rle_2frame.dcm")), read_frames(data("SC_rgb_2frame.dcm")))
    with open_cine(data("OBXXXX1A_rle_2frame.dcm")) as cine:
        frames = cine.read()
        assert frames.shape == (2, 600, 800, 3)
        # Region box x1 == 800 == Columns: one pixel past the edge, accepted; 0.0262 cm -> 0.262 mm.
        assert cine.spacing_mm == pytest.approx((0.2622878766196998, 0.2622878766196998))
    single = read_frames(data("OBXXXX1A.dcm"))
    assert single.shape == (1, 600, 800, 3)
    assert np.array_equal(frames[0], single[0])  # the RLE cine's first frame is the uncompressed file's image


def test_palette_color_applies_the_lut() -> None:
    path = data("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    expected = (pydicom.pixels.apply_color_lut(ds.pixel_array, ds) >> 8).astype(np.uint8)
    with open_cine(path) as cine:
        assert cine.channels == 3 and cine.meta["pixel_mapping"] == "palette_lut"
        assert np.array_equal(cine.frame(0), expected)
        assert cine.spacing_mm is None  # region box y1=518 on a 350-row image


def test_palette_16bit_big_and_little_endian_agree() -> None:
    little, big = open_cine(data("gdcm-US-ALOKA-16.dcm")), open_cine(data("gdcm-US-ALOKA-16_big.dcm"))
    with little, big:
        assert np.array_equal(little.frame(0), big.frame(0))
        assert little.frame(0).shape == (480, 640, 3)
        # Dual view: two equal 2D regions; spacing 0.0383 cm -> 0.383 mm; the Doppler-free third region is ignored.
        assert little.spacing_mm == pytest.approx((0.3826530650258064, 0.3826530650258064))
        assert len(little.meta["regions"]) == 3


def test_big_endian_and_voi_window() -> None:
    little, big = read_frames(data("MR_small.dcm")), read_frames(data("MR_small_bigendian.dcm"))
    assert little.shape == (1, 64, 64) and np.array_equal(little, big)
    with open_cine(data("MR_small.dcm")) as cine:
        assert cine.meta["pixel_mapping"] == "voi_window"
        assert cine.spacing_mm == (0.3125, 0.3125) and cine.meta["spacing_source"] == "PixelSpacing"
    ds = pydicom.dcmread(data("MR_small.dcm"))
    values = ds.pixel_array.astype(float) * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)  # 600 / 1600
    expected = np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    assert np.abs(little[0] - expected).max() <= 0.5 + 1e-6


def test_twelve_bit_multiframe_minmax_all_codecs_agree() -> None:
    frames = {
        n: read_frames(data(n))
        for n in (
            "emri_small.dcm",
            "emri_small_big_endian.dcm",
            "emri_small_RLE.dcm",
            "emri_small_jpeg_2k_lossless.dcm",
        )
    }
    ref = frames["emri_small.dcm"]
    assert ref.shape == (10, 64, 64) and ref.dtype == np.uint8
    assert ref.min() == 0 and ref.max() == 255  # min-max over sampled frames spans the full 8-bit range
    for name, arr in frames.items():
        assert np.array_equal(arr, ref), name


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    ds = pydicom.dcmread(data("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "mono1.dcm"
    ds.save_as(path)
    assert np.array_equal(read_frames(path), 255 - read_frames(data("MR_small.dcm")))


def test_real_monochrome1_radiograph() -> None:
    with open_cine(data("RG1_UNCR.dcm")) as cine:
        image = cine.frame(0)
        assert image.shape == (1955, 1841) and cine.meta["photometric_interpretation"] == "MONOCHROME1"
    ds = pydicom.dcmread(data("RG1_UNCR.dcm"))
    raw = ds.pixel_array
    # MONOCHROME1: the lowest stored value is displayed white, the highest black.
    assert image[np.unravel_index(raw.argmin(), raw.shape)] > image[np.unravel_index(raw.argmax(), raw.shape)]


def test_uncompressed_rgb_and_ybr422_native() -> None:
    rgb = read_frames(data("US1_UNCR.dcm"))
    assert rgb.shape == (1, 480, 640, 3) and 30 < rgb.mean() < 40
    ybr = read_frames(data("SC_ybr_full_422_uncompressed.dcm"))
    ref = read_frames(data("SC_rgb.dcm"))
    assert ybr.shape == ref.shape == (1, 100, 100, 3)
    diff = np.abs(ybr.astype(int) - ref)
    assert diff.mean() < 1.0 and diff.max() <= 8  # colour conversion rounding; 4:2:2 blurs bar edges slightly


def test_extensionless_dicom_is_found_and_read(tmp_path: Path, ybr_dicom: Path) -> None:
    study = tmp_path / "study" / "series1"
    study.mkdir(parents=True)
    shutil.copy(ybr_dicom, study / "IM0001")
    (tmp_path / "study" / "notes.txt").write_text("not an image")
    (tmp_path / "study" / ".hidden.dcm").write_bytes(b"x")
    write_video(tmp_path / "study" / "clip.avi", np.zeros((3, 16, 16), np.uint8), 10)
    found = find_inputs([tmp_path / "study"])
    assert [p.name for p in found] == ["clip.avi", "IM0001"]
    assert [p.name for p in find_inputs([tmp_path / "study"], kinds=("dicom",))] == ["IM0001"]
    assert open_cine(study / "IM0001").n_frames == 30
    assert ".dcm" in SUPPORTED_EXTENSIONS and ".webm" in SUPPORTED_EXTENSIONS


# ----------------------------------------------------------------------------------------------- headers


def test_frame_rate_sources() -> None:
    ds = Dataset()
    ds.FrameTimeVector = [0, 20, 20, 20]
    assert frame_rate(ds) == (pytest.approx(50.0), "FrameTimeVector")
    ds.CineRate = 25
    assert frame_rate(ds)[1] == "FrameTimeVector"  # acquisition timing beats playback rate
    ds.FrameTime = 40.0
    assert frame_rate(ds) == (pytest.approx(25.0), "FrameTime")
    only_display = Dataset()
    only_display.RecommendedDisplayFrameRate = 60
    assert frame_rate(only_display) == (60.0, "RecommendedDisplayFrameRate")
    assert frame_rate(Dataset()) == (None, None)


def test_spacing_picks_largest_2d_tissue_region() -> None:
    def region(fmt: int, box: tuple[int, int, int, int], delta: float, units: int = 3) -> Dataset:
        item = Dataset()
        item.RegionSpatialFormat, item.RegionDataType = fmt, 1
        (
            item.RegionLocationMinX0,
            item.RegionLocationMinY0,
            item.RegionLocationMaxX1,
            item.RegionLocationMaxY1,
        ) = box
        item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = units
        item.PhysicalDeltaX, item.PhysicalDeltaY = delta, delta * 2
        return item

    ds = Dataset()
    ds.Rows, ds.Columns = 600, 800
    ds.SequenceOfUltrasoundRegions = [
        region(1, (0, 0, 99, 99), 0.1),  # small 2D inset
        region(3, (0, 0, 799, 599), 0.5),  # spectral Doppler strip: not 2D
        region(1, (100, 50, 700, 500), 0.03),  # the B-mode image
        region(1, (0, 0, 799, 599), 0.2, units=4),  # seconds, not cm
    ]
    spacing, source, note = spacing_mm(ds)
    assert spacing == pytest.approx((0.6, 0.3)) and source == "ultrasound_region" and note is None


# ----------------------------------------------------------------------------------------- video, images


@pytest.mark.parametrize(("suffix", "codec", "tol"), [(".avi", "MJPG", 3.0), (".webm", "VP80", 6.0)])
def test_video_round_trip(tmp_path: Path, suffix: str, codec: str, tol: float) -> None:
    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur(rng.integers(0, 255, (48, 64), dtype=np.uint8), (0, 0), 3)
    gray = cv2.normalize(gray, None, 20, 235, cv2.NORM_MINMAX)
    base = np.stack([gray, gray, (gray * 0.8).astype(np.uint8)], axis=-1)
    frames = np.stack([np.roll(base, 3 * i, axis=1) for i in range(24)])
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=25.0, codec=codec)
    with open_cine(path) as cine:
        assert (cine.n_frames, cine.height, cine.width, cine.channels) == (24, 48, 64, 3)
        assert cine.fps == pytest.approx(25.0)
        assert cine.meta["codec"].upper().startswith(codec[:2])
        got = cine.read()
        assert got.shape == (24, 48, 64, 3)
        assert np.abs(got.astype(int) - frames).mean() < tol
        # Frame order: each decoded frame is closest to the source frame with the same index.
        dist = np.abs(got[:, None].astype(np.int16) - frames[None]).mean(axis=(2, 3, 4))
        assert np.array_equal(dist.argmin(axis=1), np.arange(24))
        assert np.array_equal(cine.frame(17), got[17])  # seek
        assert np.array_equal(cine.frame(3), got[3])  # backwards
        assert np.array_equal(cine.frame(6), got[6])  # short forward gap: grab()


def test_grayscale_video_keeps_three_identical_channels(tmp_path: Path) -> None:
    gray = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))
    path = write_video(tmp_path / "gray.avi", np.stack([gray] * 5), fps=10.0)
    frame = open_cine(path).frame(2)
    assert frame.shape == (48, 64, 3)
    assert np.abs(frame[..., 0].astype(int) - frame[..., 2]).max() <= 2


def test_images(tmp_path: Path) -> None:
    ramp16 = (np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 3 + 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), ramp16)
    deep = open_cine(tmp_path / "deep.png")
    assert (deep.n_frames, deep.channels, deep.meta["source_dtype"]) == (1, 1, "uint16")
    image = deep.frame(0)
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255  # stretched min-max

    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 50  # BGRA: red 200, mostly transparent
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    rgb = read_frames(tmp_path / "alpha.png")
    assert rgb.shape == (1, 10, 12, 3) and tuple(rgb[0, 0, 0]) == (200, 0, 0)

    for suffix in (".jpg", ".bmp", ".tiff"):
        bgr = np.zeros((20, 30, 3), np.uint8)
        bgr[..., 0] = 255  # blue in OpenCV order
        cv2.imwrite(str(tmp_path / f"blue{suffix}"), bgr)
        out = read_frames(tmp_path / f"blue{suffix}")
        assert out.shape == (1, 20, 30, 3) and out[0, 10, 15, 2] > 240 and out[0, 10, 15, 0] < 15, suffix


def test_real_hc18_png(hc18_dir: Path) -> None:
    first = sorted((hc18_dir / "images").glob("*.png"))[0]
    with open_cine(first) as cine:
        assert cine.n_frames == 1 and cine.frame(0).dtype == np.uint8
        assert cine.height > 100 and cine.width > 100


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_cine(tmp_path / "absent.dcm")
    with pytest.raises(InputError, match="no such file or folder"):
        find_inputs([tmp_path / "absent"])


@pytest.mark.parametrize(
    "name", ["SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cy+s4.dcm", "SC_jpeg_no_color_transform.dcm"]
)
def test_jpeg_baseline_pillow_matches_gdcm(name: str) -> None:
    # sonokit prefers Pillow for JPEG Baseline (faster); GDCM is the independent reference.
    reference = pydicom.pixels.pixel_array(str(data(name)), decoding_plugin="gdcm")
    assert np.array_equal(read_frames(data(name))[0], reference)


def test_falls_back_when_the_preferred_plugin_fails(ybr_dicom: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = read_frames(ybr_dicom)[4]
    original = pydicom.pixels.pixel_array

    def no_pillow(*args, **kwargs):
        if kwargs.get("decoding_plugin") == "pillow":
            raise RuntimeError("pillow refuses")
        return original(*args, **kwargs)

    monkeypatch.setattr(pydicom.pixels, "pixel_array", no_pillow)
    with open_cine(ybr_dicom) as cine:
        assert cine._source.plugin == ""  # switched to pydicom's own plugin order at open time
        assert np.array_equal(cine.frame(4), expected)
