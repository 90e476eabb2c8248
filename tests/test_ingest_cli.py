"""`sonokit info / convert / anonymize` run as real processes, so exit codes and stderr are what a user sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from sonokit.io import open_cine, write_video
from sonokit.preprocess import detect_sector

# Identifier values planted in a copy of the real echo; none may survive anywhere in the output bytes.
PLANTED = {
    "PatientName": "Doe^Janet",
    "PatientID": "MRN-771234",
    "PatientBirthDate": "19610704",
    "OtherPatientIDs": "ALT-5544",
    "InstitutionName": "St Elsewhere General",
    "ReferringPhysicianName": "Heart^Harry",
    "AccessionNumber": "ACC-99812",
    "StudyInstanceUID": "1.2.826.0.1.3680043.10.999.424242",
}
PRIVATE_VALUE = "PRIVATE-MRN-771234"


def sonokit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SONOKIT_NO_PROGRESS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sonokit", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


@pytest.fixture()
def planted(tmp_path: Path, ybr_dicom: Path) -> Path:
    ds = pydicom.dcmread(ybr_dicom)
    for keyword, value in PLANTED.items():
        setattr(ds, keyword, value)
    ds.private_block(0x0011, "ACME Cardiology", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
    path = tmp_path / "in" / "study1" / "echo.dcm"
    path.parent.mkdir(parents=True)
    ds.save_as(path)
    return path


def _originals(ybr_dicom: Path) -> list[str]:
    ds = pydicom.dcmread(ybr_dicom, stop_before_pixels=True)
    values = [*PLANTED.values(), PRIVATE_VALUE, "Doe", "Janet", "Elsewhere", "MRN-771234"]
    values += [str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), "20160503", "SONOPPS0002171", "microMAXX"]
    return values


def test_anonymize_cli_removes_identifiers_and_masks_pixels(
    tmp_path: Path, planted: Path, ybr_dicom: Path
) -> None:
    out = tmp_path / "anon"
    proc = sonokit("anonymize", tmp_path / "in", "--out", out, "--keep-names")
    _no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    result = out / "study1" / "echo.dcm"  # same relative name with --keep-names
    data = result.read_bytes()
    for value in _originals(ybr_dicom):
        assert value.encode() not in data, value
    ds = pydicom.dcmread(result)
    assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
    # the compressed input's masked pixels are re-encoded losslessly (JPEG 2000 with the reversible colour
    # transform), not written out uncompressed at many times the size
    assert int(ds.NumberOfFrames) == 30 and ds.PhotometricInterpretation == "YBR_RCT"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert result.stat().st_size < 3 * ybr_dicom.stat().st_size
    original = open_cine(planted).read()
    geometry = detect_sector(original)
    pixels = ds.pixel_array
    assert pixels.shape == (30, 240, 320, 3)
    assert pixels[:, ~geometry.mask].max() == 0  # everything outside the sector is 0
    assert np.array_equal(pixels[:, geometry.mask], original[:, geometry.mask])  # the sector is untouched
    # The burned-in patient label at the top left ("PLA") was there and is gone.
    assert original[:, :12, :30].max() > 100 and pixels[:, :12, :30].max() == 0


def test_info_json_and_failures(tmp_path: Path, planted: Path) -> None:
    video = write_video(tmp_path / "clip.avi", np.zeros((8, 32, 48, 3), np.uint8), fps=25.0)
    bad = tmp_path / "notes.dcm"
    bad.write_text("hello\n" * 30)
    proc = sonokit("info", "--json", planted, video, bad)
    _no_traceback(proc)
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}: not a DICOM file")
    records = {Path(r["path"]).name: r for r in json.loads(proc.stdout)}
    echo, clip = records["echo.dcm"], records["clip.avi"]
    assert (echo["frames"], echo["width"], echo["height"], echo["channels"]) == (30, 320, 240, 3)
    assert echo["fps"] == pytest.approx(30.0003, abs=1e-3)
    assert echo["photometric_interpretation"] == "YBR_FULL_422"
    assert echo["transfer_syntax"] == "JPEG Baseline (Process 1)"
    assert "burned_in_annotation" in echo
    assert (clip["frames"], clip["fps"], clip["codec"]) == (8, 25.0, "MJPG")
    assert "error" in records["notes.dcm"]
    for value in (*PLANTED.values(), PRIVATE_VALUE, "Doe"):
        assert value not in proc.stdout, value

    text = sonokit("info", planted)
    assert text.returncode == 0 and "30.00 (from FrameTime)" in text.stdout and "Doe" not in text.stdout


@pytest.mark.slow
def test_convert_round_trip_and_filelist_merge(tmp_path: Path, planted: Path) -> None:
    out = tmp_path / "echonet"
    out.mkdir()
    pd.DataFrame({"FileName": ["old_video"], "EF": [55.0], "FPS": [50], "Split": ["TRAIN"]}).to_csv(
        out / "FileList.csv", index=False
    )
    truncated = tmp_path / "broken.avi"
    good = write_video(
        tmp_path / "whole.avi", np.random.default_rng(0).integers(0, 255, (40, 64, 64), np.uint8), 25
    )
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    proc = sonokit("convert", planted, truncated, "--out", out, "--size", "112")
    _no_traceback(proc)
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and str(truncated) in errors[0] and "truncated" in errors[0]
    assert not (out / "Videos" / "broken.avi").exists()
    # no temp files left behind; the sidecar holds the video's spacing and frame rate
    assert sorted(p.name for p in (out / "Videos").iterdir()) == ["echo.avi", "echo.avi.json"]
    with open_cine(out / "Videos" / "echo.avi") as cine:
        assert (cine.n_frames, cine.height, cine.width, cine.channels) == (30, 112, 112, 3)
        assert cine.fps == pytest.approx(30.0, abs=0.01)  # source rate kept by default
        assert cine.meta["codec"] == "MJPG"
        frames = cine.read()
    assert frames[:, :3, :3].max() < 20 and frames[:, 40:70, 40:70].mean() > 5  # dark corners, echo inside

    proc = sonokit("convert", planted, "--out", out, "--fps", "50")
    assert proc.returncode == 0, proc.stderr
    with open_cine(out / "Videos" / "echo.avi") as cine:
        assert cine.n_frames == 50 and cine.fps == pytest.approx(50.0)  # 1 s of 30 fps resampled to 50 fps
    table = pd.read_csv(out / "FileList.csv")
    assert list(table["FileName"]) == ["echo", "old_video"]
    row = table.set_index("FileName").loc["echo"]
    assert (row["FrameHeight"], row["FrameWidth"], row["FPS"], row["NumberOfFrames"]) == (112, 112, 50.0, 50)
    assert table.set_index("FileName").loc["old_video", "Split"] == "TRAIN"  # existing columns and rows kept


def test_no_inputs_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = sonokit("info", tmp_path / "empty")
    _no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no supported" in proc.stderr
