"""De-identification without surprises: compression kept or restated, text inside the sector reported, video
exports masked and stripped of their tags, saved pictures masked. Real pydicom cines; videos written to disk."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames

from sonokit.io import open_cine, write_video
from sonokit.io.deid import deidentify_file, masked_frames
from sonokit.preprocess.sector import render_sector
from sonokit.preprocess.text import find_text

J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"


def _expected(src: Path) -> np.ndarray:
    frames, _, _ = masked_frames(src, pydicom.dcmread(src, stop_before_pixels=True))
    return frames


# ------------------------------------------------------------------------------------------ 1. compression


def test_masked_jpeg_cine_is_reencoded_losslessly_near_its_size(tmp_path: Path, ybr_dicom: Path) -> None:
    res = deidentify_file(ybr_dicom, tmp_path / "auto.dcm")
    ds = pydicom.dcmread(res.dst)
    assert res.pixels == "masked" and ds.file_meta.TransferSyntaxUID == J2K_LOSSLESS
    assert ds.PhotometricInterpretation == "YBR_RCT" and int(ds.NumberOfFrames) == 30
    assert res.bytes_out < 2.0 * res.bytes_in  # 225 KB -> 365 KB; raw it was 6.9 MB (31x)
    assert np.array_equal(
        open_cine(res.dst).read(), _expected(ybr_dicom)
    )  # lossless: the masked frames exactly
    assert ds.LossyImageCompression == "01"  # the pixels were lossy once, and stay marked so

    raw = deidentify_file(ybr_dicom, tmp_path / "raw.dcm", codec="none")
    assert raw.bytes_out > 25 * raw.bytes_in  # what the issue saw: 20-fold and more

    lossy = deidentify_file(ybr_dicom, tmp_path / "q90.dcm", codec="jpeg", quality=90)
    ds = pydicom.dcmread(lossy.dst)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and lossy.bytes_out < lossy.bytes_in
    methods, ratios = ds["LossyImageCompressionMethod"].value, ds["LossyImageCompressionRatio"].value
    assert "ISO_10918_1" in ([methods] if isinstance(methods, str) else list(methods))
    assert float(list(ratios)[-1]) > 10  # the source's own ratio (19) first, then this encoding's
    error = np.abs(open_cine(lossy.dst).read().astype(int) - _expected(ybr_dicom))
    assert error.mean() < 1.0


@pytest.mark.slow
def test_the_6mb_jpeg_cine_stays_near_6mb(tmp_path: Path) -> None:
    src = Path(get_testdata_file("color3d_jpeg_baseline.dcm"))  # 120 frames 640 x 480, 6.1 MB
    res = deidentify_file(src, tmp_path / "cine.dcm")
    assert res.pixels == "masked" and res.encoding_out == "JPEG 2000 Image Compression (Lossless Only)"
    assert res.bytes_out < 1.5 * res.bytes_in  # measured 6.14 -> 6.67 MB; uncompressed it was 111 MB
    assert len(open_cine(res.dst)) == 120


@pytest.mark.parametrize(
    ("name", "factor"),
    [("OBXXXX1A_rle.dcm", 1.0), ("US1_J2KR.dcm", 1.2), ("US1_J2KI.dcm", 3.0)],
)
def test_other_compressed_ultrasound_stays_compressed(tmp_path: Path, name: str, factor: float) -> None:
    src = Path(get_testdata_file(name))
    res = deidentify_file(src, tmp_path / "out.dcm", codec="auto")
    assert res.pixels == "masked" and res.encoding_out.startswith("JPEG 2000")
    assert res.bytes_out <= factor * res.bytes_in  # RLE 49 -> 15 KB, J2K lossless 154 -> 134, lossy 59 -> 156
    assert np.array_equal(open_cine(res.dst).read(), _expected(src))
    rle = deidentify_file(src, tmp_path / "rle.dcm", codec="rle")
    assert rle.encoding_out == "RLE Lossless" and np.array_equal(open_cine(rle.dst).read(), _expected(src))


def test_unchanged_pixels_keep_the_input_bytes(tmp_path: Path, ybr_dicom: Path) -> None:
    # an RLE cine whose image fills the frame (nothing around it to blank): masking changes no pixel
    ds = pydicom.dcmread(ybr_dicom, stop_before_pixels=True)
    for keyword in ("SequenceOfUltrasoundRegions", "LossyImageCompression", "LossyImageCompressionRatio"):
        if keyword in ds:
            del ds[keyword]
    speckle = np.random.default_rng(0).integers(20, 200, size=(8, 96, 128)).astype(np.uint8)
    ds.set_pixel_data(speckle, "MONOCHROME2", 8, generate_instance_uid=False)
    ds.compress("1.2.840.10008.1.2.5", generate_instance_uid=False)
    src = tmp_path / "full.dcm"
    ds.save_as(src)
    res = deidentify_file(src, tmp_path / "out.dcm")
    out = pydicom.dcmread(res.dst)
    assert res.pixels == "unchanged" and out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert out.PixelData == ds.PixelData and out.BurnedInAnnotation == "NO"
    assert np.array_equal(out.pixel_array, speckle)


def test_kept_jpeg_streams_lose_their_comments_and_exif(tmp_path: Path, ybr_dicom: Path) -> None:
    ds = pydicom.dcmread(ybr_dicom)
    frames = list(generate_frames(ds.PixelData, number_of_frames=30))
    com = b"\xff\xfe" + struct.pack(">H", 2 + 17) + b"DOE^JANE 19610704"
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 15) + b"Exif\x00\x00MRN771234"
    ds.PixelData = encapsulate([f[:2] + com + exif + f[2:] for f in frames], has_bot=True)
    src = tmp_path / "planted.dcm"
    ds.save_as(src)
    assert b"DOE^JANE" in src.read_bytes()
    for mask_pixels in (False, True):
        out = deidentify_file(src, tmp_path / f"out{mask_pixels}.dcm", mask_pixels=mask_pixels).dst
        data = out.read_bytes()
        assert b"DOE^JANE" not in data and b"MRN771234" not in data
    kept = pydicom.dcmread(tmp_path / "outFalse.dcm")
    assert kept.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert (
        list(generate_frames(kept.PixelData, number_of_frames=30)) == frames
    )  # only the planted segments went
    assert np.array_equal(open_cine(tmp_path / "outFalse.dcm").read(), open_cine(ybr_dicom).read())


# -------------------------------------------------------------------------------- 3. BurnedInAnnotation


def _with_text_in_sector(ybr_dicom: Path, path: Path) -> Path:
    ds = pydicom.dcmread(ybr_dicom)
    ds.decompress(generate_instance_uid=False)
    pixels = ds.pixel_array.copy()  # RGB after decompress
    for frame in pixels:  # the typed label sits on the image, inside the fan
        cv2.putText(frame, "DOE JANE", (130, 110), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)
    return path


def test_text_inside_the_sector_keeps_burned_in_annotation_yes(tmp_path: Path, ybr_dicom: Path) -> None:
    clean = deidentify_file(ybr_dicom, tmp_path / "clean.dcm")
    ds = pydicom.dcmread(clean.dst)
    assert clean.text_in_sector is False and ds.BurnedInAnnotation == "NO"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113101"]

    texty = deidentify_file(_with_text_in_sector(ybr_dicom, tmp_path / "texty.dcm"), tmp_path / "out.dcm")
    ds = pydicom.dcmread(texty.dst)
    assert texty.text_in_sector is True and ds.BurnedInAnnotation == "YES"
    assert "113101" not in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]


def _fan_frames(n: int = 12, text_inside: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A moving-speckle fan (grey) with a static white banner above it, as an export shows it."""
    rng = np.random.default_rng(seed)
    mask = render_sector((240, 320), (160, 30), (-40, 40), (0, 200))
    frames = np.zeros((n, 240, 320), np.uint8)
    for frame in frames:
        frame[mask] = rng.integers(30, 140, size=int(mask.sum()))
        # overlay text is drawn over the image, not blended with it (LINE_8: no anti-aliasing)
        cv2.putText(frame, "DOE JANE 04/07/61", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1, cv2.LINE_8)
        if text_inside:
            cv2.putText(frame, "LIVER L", (120, 150), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1, cv2.LINE_8)
    return frames, mask


def test_find_text_sees_a_label_inside_and_ignores_text_outside() -> None:
    frames, mask = _fan_frames()
    assert not find_text(frames, mask).found  # the banner lies outside the fan
    found = find_text(*_fan_frames(text_inside=True))
    assert found.found and found.box is not None and 110 <= found.box[0] <= 130 and 135 <= found.box[1] <= 150
    still, _ = _fan_frames(n=1, text_inside=True)
    assert find_text(still[0], mask).found  # a single frame: brightness and shape alone


# --------------------------------------------------------------------------------------------- 2. videos


def _add_avi_info(path: Path, tags: dict[bytes, bytes]) -> None:
    """Append a RIFF `LIST INFO` chunk (title, comment, ...) to an AVI and fix the RIFF size, as exporters do."""
    body = b"INFO"
    for key, value in tags.items():
        value += b"\x00" * (1 + len(value) % 2)  # NUL-terminated, even length
        body += key + struct.pack("<I", len(value)) + value
    data = bytearray(path.read_bytes())
    data += b"LIST" + struct.pack("<I", len(body)) + body
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))


def test_anonymize_masks_video_exports_and_drops_their_tags(tmp_path: Path, ybr_dicom: Path) -> None:
    from typer.testing import CliRunner

    from sonokit.cli.main import app

    study = tmp_path / "in" / "DOE_JANE"
    study.mkdir(parents=True)
    frames, mask = _fan_frames(n=20)
    avi = write_video(study / "DOE_JANE_echo.avi", frames, fps=25.0)
    _add_avi_info(avi, {b"INAM": b"DOE^JANE", b"ICMT": b"MRN 771234", b"ICRD": b"2016-05-03"})
    assert b"MRN 771234" in avi.read_bytes() and len(open_cine(avi)) == 20  # still a valid AVI
    mp4 = write_video(study / "clip.mp4", frames[:8], fps=25.0)
    shutil.copy(ybr_dicom, study / "cine.dcm")

    out = tmp_path / "anon"
    res = CliRunner().invoke(app, ["anonymize", str(tmp_path / "in"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "report: " in res.output and "MB in" in res.output and "DOE" not in res.output
    report = pd.read_csv(out / "deid_report.csv")
    # numbered in input order (DOE_JANE_echo.avi, cine.dcm, clip.mp4), videos keep their container
    assert list(report["output"]) == [
        "study_001/video_0001.avi",
        "study_001/image_0002.dcm",
        "study_001/video_0003.mp4",
    ]
    video = out / "study_001" / "video_0001.avi"
    data = video.read_bytes()
    for secret in (b"DOE^JANE", b"MRN 771234", b"2016-05-03"):  # (3 bytes turn up by chance in MJPG data)
        assert secret not in data
    got = open_cine(video).read()
    if got.ndim == 4:
        got = got.max(axis=-1)
    assert len(got) == 20 and open_cine(video).fps == pytest.approx(25.0)
    assert got[:, :22, :170].max() < 40  # the banner is gone (MJPG ringing stays faint)
    assert np.abs(got[:, mask].astype(int) - frames[:, mask]).mean() < 6  # the image stays
    row = report.set_index("output").loc["study_001/video_0001.avi"]
    assert row["kind"] == "video" and row["pixels"] == "masked" and row["text_in_sector"] == "no"
    assert len(open_cine(out / "study_001" / "video_0003.mp4")) == 8 and mp4.exists()


# ---------------------------------------------------------------------------------------- 4. saved pictures


def test_similar_montage_frames_are_masked(tmp_path: Path) -> None:
    from sonokit.retrieval.montage import montage
    from sonokit.retrieval.runs import _read_frame

    frames, mask = _fan_frames(n=10)
    avi = write_video(tmp_path / "clip.avi", frames, fps=25.0)
    png = tmp_path / "still.png"
    cv2.imwrite(str(png), frames[0])
    for path, frame in ((avi, "3"), (png, "")):
        shown = _read_frame(str(path), frame)
        shown = shown.max(axis=-1) if shown.ndim == 3 else shown
        assert shown[:22, :170].max() < 40, path  # raw, the banner is 255
        assert shown[mask].mean() > 40  # the fan is shown
    out = montage(_read_frame(str(png), ""), [_read_frame(str(avi), "3")], ["n1"], tmp_path / "m.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_detection_montage_is_masked(tmp_path: Path) -> None:
    from sonokit.av.plots import detection_montage

    frames, mask = _fan_frames(n=1)
    png = tmp_path / "f.png"
    cv2.imwrite(str(png), frames[0])
    preds = pd.DataFrame([{"path": str(png), "status": "none", "score": 0.0}])
    out = cv2.imread(str(detection_montage(preds, tmp_path / "grid.png", n=1, cols=1)), cv2.IMREAD_GRAYSCALE)
    assert out.shape == (320, 320)  # the tile is stretched to a square: rows 0-21 become 0-29
    assert out[:29, :170].max() < 40 and out[100:200, 120:200].mean() > 40  # banner gone, fan kept


def test_synth_montage_tiles_and_av_crops_are_masked(tmp_path: Path) -> None:
    from sonokit.av.cascade import _shown_crop
    from sonokit.synth.montage import _read_gray

    frames, mask = _fan_frames(n=1)
    png = tmp_path / "real.png"
    cv2.imwrite(str(png), frames[0])
    tile = _read_gray(png)  # what a fetal or PSAX tile of a real dataset folder shows
    assert tile[:22, :170].max() < 40 and tile[mask].mean() > 40
    crop = _shown_crop(
        png, frames[0][0:60, 100:220].copy(), (100, 0, 220, 60)
    )  # a window over banner and fan
    assert crop[:22, :70].max() < 40 and crop[mask[0:60, 100:220]].mean() > 40
