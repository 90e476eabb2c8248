"""Every kind of broken input gives one InputError line that names the file and the problem."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from sonokit.errors import InputError
from sonokit.io import find_inputs, open_cine, write_video


def _fails(path: Path, *words: str) -> str:
    """Open `path` and read all frames; the InputError must name the file, be one line and contain `words`."""
    with pytest.raises(InputError) as info:
        with open_cine(path) as cine:
            cine.read()
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.fixture()
def avi(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (60, 64, 64, 3), dtype=np.uint8)
    return write_video(tmp_path / "real.avi", frames, fps=30.0)


@pytest.mark.parametrize("suffix", [".dcm", ".avi", ".png", ".mp4"])
def test_zero_byte_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.touch()
    _fails(path, "empty (0 bytes)")


def test_truncated_dicom_pixel_data(tmp_path: Path, ybr_dicom: Path) -> None:
    data = ybr_dicom.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * 0.6)])  # the header survives, the last frames do not
    _fails(path, "cannot decode frame")


def test_truncated_dicom_header(tmp_path: Path, ybr_dicom: Path) -> None:
    path = tmp_path / "cut_header.dcm"
    path.write_bytes(ybr_dicom.read_bytes()[:700])
    _fails(path)


def test_truncated_avi(tmp_path: Path, avi: Path) -> None:
    path = tmp_path / "cut.avi"
    path.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    message = _fails(path, "truncated")
    assert "60 frames" in message  # the header's count, compared with what could be decoded


def test_avi_cut_inside_its_header(tmp_path: Path, avi: Path) -> None:
    path = tmp_path / "stub.avi"
    path.write_bytes(avi.read_bytes()[:300])
    _fails(path, "not a readable video")


def test_dicom_without_pixel_data(tmp_path: Path, ybr_dicom: Path) -> None:
    ds = pydicom.dcmread(ybr_dicom)
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    _fails(path, "no pixel data")


def test_dicom_non_image_object(tmp_path: Path) -> None:
    _fails(Path(get_testdata_file("rtplan.dcm")), "no image attributes")


def test_unsupported_transfer_syntax(tmp_path: Path, ybr_dicom: Path) -> None:
    ds = pydicom.dcmread(ybr_dicom)
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.99.1"  # a private, undecodable syntax
    path = tmp_path / "odd_syntax.dcm"
    ds.save_as(path)
    _fails(path, "transfer syntax", "not supported")


def test_real_file_no_installed_decoder_can_read() -> None:
    # 12-bit JPEG Extended: neither GDCM nor Pillow decodes it (and the GPL libjpeg plugin is not installed).
    _fails(Path(get_testdata_file("JPEG-lossy.dcm")), "cannot decode frame 0", "12-bit")


@pytest.mark.parametrize("suffix", [".dcm", ".avi", ".png"])
def test_text_file_renamed(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"notes{suffix}"
    path.write_text("Patient seen in clinic; follow-up in 6 weeks.\n" * 20)
    _fails(path, "not a")


def test_dicom_with_zero_frames(tmp_path: Path, ybr_dicom: Path) -> None:
    ds = pydicom.dcmread(ybr_dicom)
    ds.NumberOfFrames = 0
    path = tmp_path / "zero_frames.dcm"
    ds.save_as(path)
    _fails(path, "NumberOfFrames is 0")


def test_video_with_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "zero_frames.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 32), True)
    writer.release()
    assert path.stat().st_size > 0  # a container with a header and no frames
    _fails(path)


def test_truncated_png(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((64, 64), 128, np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(good.read_bytes()[:40])
    _fails(path, "not a readable image")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    _fails(path, "unsupported file type '.csv'")


def test_folder_without_supported_files(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("nothing to see")
    with pytest.raises(InputError, match="no supported dicom/video/image files found") as info:
        find_inputs([tmp_path / "docs"])
    assert str(tmp_path / "docs") in str(info.value)
    with pytest.raises(InputError, match="is a folder"):
        open_cine(tmp_path / "docs")
