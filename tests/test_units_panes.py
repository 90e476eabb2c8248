"""Physical units survive `convert` (sidecar + FileList spacing), `ef simpson` never mixes mL with pixel^3, and
multi-pane screens are detected (refused, or split / one pane kept) instead of being squeezed into one square.

Real files: the ultrasound DICOMs shipped in pydicom and pydicom-data (single-pane cines and stills, and ALOKA's
real dual view) and the HC18 images; two-pane videos are built from simulated echo cines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from sonokit.errors import InputError
from sonokit.io import open_cine, read_frames
from sonokit.preprocess.panes import detect_panes, parse_pane

# Every ultrasound file in pydicom's and pydicom-data's test sets that shows one image (cines and stills).
SINGLE_PANE = [
    "examples_ybr_color.dcm", "color3d_jpeg_baseline.dcm", "examples_rgb_color.dcm", "examples_palette.dcm",
    "examples_jpeg2k.dcm", "US1_J2KR.dcm", "US1_UNCR.dcm", "OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm", "color-pl.dcm",
]  # fmt: skip
DUAL_VIEW = "gdcm-US-ALOKA-16.dcm"  # a real dual-mode screen: two 2D regions side by side, touching


def _cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonokit", *map(str, args)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def cine() -> np.ndarray:
    """A simulated apical four-chamber cine, (F, 112, 112) uint8."""
    from sonokit.synth.echo import render_echo, sample_echo_case

    return render_echo(sample_echo_case(0, 0)).frames


def _recolour(gray: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(cv2.applyColorMap(g, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB) for g in gray])


# ------------------------------------------------------------------------------------------------ pane detection


def test_multi_pane_layouts_are_found(cine: np.ndarray) -> None:
    rgb = np.repeat(cine[..., None], 3, axis=-1)
    gap = np.zeros_like(rgb[:, :, :10])
    cases = {
        "same clip twice": (np.concatenate([rgb, rgb], axis=2), 2, "x"),
        "raw + recoloured copy": (np.concatenate([rgb, _recolour(cine)], axis=2), 2, "x"),
        "two fans and a gutter": (np.concatenate([rgb, gap, rgb], axis=2), 2, "x"),
        "stacked": (np.concatenate([rgb, rgb], axis=1), 2, "y"),
        "three in a row": (np.concatenate([rgb, rgb, rgb], axis=2), 3, "x"),
    }
    for name, (frames, n, axis) in cases.items():
        layout = detect_panes(frames)
        assert layout is not None and (layout.n, layout.axis) == (n, axis), (name, layout)
        length = frames.shape[2] if axis == "x" else frames.shape[1]
        cuts = [b[2] if axis == "x" else b[3] for b in layout.boxes[:-1]]
        assert all(abs(c - (i + 1) * length / n) <= 8 for i, c in enumerate(cuts)), (name, layout.boxes)
    assert detect_panes(cine) is None and detect_panes(rgb) is None


def test_lung_reverberation_is_not_taken_for_stacked_panes(tmp_path: Path) -> None:
    """A-lines repeat the pleura down the screen at multiples of its depth, fainter each time: simulated lung
    cines whose texture repeats at a quarter and a half of the frame (correlation 0.59 / 0.69) are one pane."""
    from sonokit.io import read_frames
    from sonokit.synth import make_dataset

    data = make_dataset("lus", tmp_path / "lus", n=3, size=128, seed=1)
    for name in ("lus_00001.avi", "lus_00002.avi"):
        assert detect_panes(read_frames(data / "videos" / name)) is None, name


def test_real_single_pane_files_are_not_flagged_and_the_real_dual_view_is() -> None:
    for name in SINGLE_PANE:
        with open_cine(get_testdata_file(name)) as c:
            assert detect_panes(c.read(), c.meta.get("regions")) is None, name
    with open_cine(get_testdata_file(DUAL_VIEW)) as c:
        layout = detect_panes(c.read(), c.meta.get("regions"))
    assert layout is not None and layout.cue == "regions" and layout.n == 2 and layout.axis == "x"
    assert layout.boxes[0][2] == 336 and layout.boxes[1][0] == 336  # the header's region boundary


def test_hc18_images_are_single_pane(hc18_dir: Path) -> None:
    images = sorted((hc18_dir / "images").glob("*.png"))[::4]
    flagged = [p.name for p in images if detect_panes(read_frames(p)) is not None]
    assert len(images) >= 50 and flagged == []


def test_pane_option_values() -> None:
    assert [parse_pane(v) for v in (None, "1", "2", "left", "right", "bottom", "all")] == [None, 1, 2, 1, -1, -1,
                                                                                          "all"]  # fmt: skip
    for bad in ("0", "middle", "-2"):
        with pytest.raises(InputError, match="--pane must be"):
            parse_pane(bad)


def test_convert_refuses_splits_or_keeps_one_pane(tmp_path: Path, cine: np.ndarray) -> None:
    from sonokit.io import write_video

    dual = get_testdata_file(DUAL_VIEW)
    proc = _cli("convert", dual, "--out", tmp_path / "refused")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and DUAL_VIEW in errors[0] and "2 panes side by side" in errors[0]
    assert not (tmp_path / "refused" / "Images").exists()

    assert _cli("convert", dual, "--out", tmp_path / "all", "--pane", "all").returncode == 0
    written = sorted(p.name for p in (tmp_path / "all" / "Images").iterdir())
    stem = Path(DUAL_VIEW).stem
    assert written == [f"{stem}_pane{k}.png{ext}" for k in (1, 2) for ext in ("", ".json")]
    side = json.loads((tmp_path / "all" / "Images" / f"{stem}_pane2.png.json").read_text())
    assert side["pane"] == 2 and side["panes"] == 2 and side["spacing_mm"][0] > 0.38  # 0.383 mm, enlarged

    two = write_video(
        tmp_path / "in" / "two.avi", np.concatenate([cine, cine], axis=2), fps=50.0, codec="MJPG"
    )
    one = write_video(tmp_path / "in" / "one.avi", cine, fps=50.0, codec="MJPG")
    proc = _cli("convert", two, one, "--out", tmp_path / "out", "--pane", "right")
    assert proc.returncode == 0, proc.stderr  # --pane on a single-pane file: the whole frame
    pane, single = (read_frames(tmp_path / "out" / "Videos" / n)[..., 1].astype(np.float32) for n in ("two.avi",
                                                                                                     "one.avi"))  # fmt: skip
    assert pane.shape == single.shape
    assert np.abs(pane - single).mean() < 3.0  # the same pane, not both squeezed into 112 px


# ------------------------------------------------------------------------------------------------ units


def test_convert_writes_the_output_spacing_and_open_cine_reads_it_back(tmp_path: Path) -> None:
    from sonokit.preprocess import preprocess_cine

    src = Path(get_testdata_file("color3d_jpeg_baseline.dcm"))  # real cine, 0.51 mm pixels from its regions
    ybr = Path(get_testdata_file("examples_ybr_color.dcm"))  # real cine without spacing
    proc = _cli("convert", src, ybr, "--out", tmp_path, "--size", "112")
    assert proc.returncode == 0, proc.stderr
    with open_cine(src) as c:
        spacing, frames = c.spacing_mm, c.read()
    expected = spacing[0] * preprocess_cine(frames, 112)[2].pixel_size
    table = pd.read_csv(tmp_path / "FileList.csv").set_index("FileName")
    row = table.loc[src.stem]
    assert (
        row["SpacingY_mm"] == pytest.approx(expected, abs=1e-5) and row["SpacingX_mm"] == row["SpacingY_mm"]
    )
    assert row["FPS"] == pytest.approx(30.0) and 2.0 < expected < 3.0  # a ~500-px fan shown in 112 px
    assert table.loc[ybr.stem, ["SpacingY_mm", "SpacingX_mm"]].isna().all()

    avi = tmp_path / "Videos" / f"{src.stem}.avi"
    with open_cine(avi) as c:
        assert c.spacing_mm == pytest.approx((expected, expected), abs=1e-5)
        assert c.meta["spacing_source"] == "sidecar"
    (tmp_path / "Videos" / f"{src.stem}.avi.json").unlink()  # the FileList row alone also gives it
    with open_cine(avi) as c:
        assert c.spacing_mm == pytest.approx((expected, expected), abs=1e-5)
        assert c.meta["spacing_source"] == "FileList.csv"
    with open_cine(tmp_path / "Videos" / f"{ybr.stem}.avi") as c:
        assert c.spacing_mm is None
    (tmp_path / "Videos" / f"{ybr.stem}.avi.json").write_text('{"spacing_mm": [0, -1]}')
    with pytest.raises(InputError, match=r"avi.json: spacing_mm must be"):
        open_cine(tmp_path / "Videos" / f"{ybr.stem}.avi")


@pytest.fixture(scope="module")
def synth_echo(tmp_path_factory) -> Path:
    """Simulated EchoNet folder whose FileList EDV/ESV are mL (synth_meta.csv holds each video's mm per pixel)."""
    from sonokit.synth.echo import make_echo_dataset

    return make_echo_dataset(tmp_path_factory.mktemp("synth") / "echo", n=4, seed=3)


def _with_spacing(root: Path, out: Path, names: list[str] | None = None) -> Path:
    """Copy of the FileList + tracings with SpacingY_mm / SpacingX_mm from synth_meta (for `names`, or all)."""
    import shutil

    out.mkdir(parents=True)
    shutil.copy(root / "VolumeTracings.csv", out)
    fl = pd.read_csv(root / "FileList.csv")
    mm = pd.read_csv(root / "synth_meta.csv").set_index("FileName")["mm_per_px"]
    keep = fl["FileName"].isin(names if names is not None else fl["FileName"])
    fl["SpacingY_mm"] = fl["SpacingX_mm"] = np.where(keep, fl["FileName"].map(mm), np.nan)
    fl.to_csv(out / "FileList.csv", index=False)
    return out


def test_ef_simpson_gives_ml_with_spacing_and_never_mixes_units(synth_echo: Path, tmp_path: Path) -> None:
    proc = _cli("ef", "simpson", synth_echo, "--out", tmp_path / "px.csv")
    assert proc.returncode == 0, proc.stderr
    px = pd.read_csv(tmp_path / "px.csv")
    assert (px["volume_unit"] == "px^3").all() and "EDV_diff" not in px.columns and "EDV_ratio" in px.columns
    assert "not compared with FileList's mL" in proc.stdout

    with_mm = _with_spacing(synth_echo, tmp_path / "mm")
    proc = _cli("ef", "simpson", with_mm, "--out", tmp_path / "ml.csv")
    assert proc.returncode == 0, proc.stderr
    ml = pd.read_csv(tmp_path / "ml.csv")
    assert (ml["volume_unit"] == "mL").all() and "EDV_ratio" not in ml.columns
    # the simulator wrote FileList's EDV/ESV in mL from the same tracings: the same numbers come back
    np.testing.assert_allclose(ml["EDV_simpson"], ml["EDV_filelist"], atol=1e-4)
    np.testing.assert_allclose(ml["ESV_diff"], 0.0, atol=1e-4)
    np.testing.assert_allclose(ml["EF_simpson"], px["EF_simpson"], atol=1e-9)
    assert "volumes in mL" in proc.stdout

    names = list(pd.read_csv(synth_echo / "FileList.csv")["FileName"])
    partial = _with_spacing(synth_echo, tmp_path / "partial", names[:2])
    proc = _cli("ef", "simpson", partial, "--out", tmp_path / "mixed.csv")
    assert proc.returncode == 2 and not (tmp_path / "mixed.csv").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "FileList.csv" in lines[0] and "missing for 2 of 4 traced videos" in lines[0]
    assert names[2] in lines[0] and names[3] in lines[0] and "pixel^3 beside" in lines[0]
