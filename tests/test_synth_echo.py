"""The simulated EchoNet-Dynamic folder: formats, ground truth against the pixels, determinism."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from sonokit.clinical import ejection_fraction, rasterize_tracing, volume_from_tracing
from sonokit.errors import InputError
from sonokit.synth import make_echo_dataset, montage, sample_echo_case
from sonokit.synth.scan import image_frame

SEED = 7
N = 4  # indices 0-3 cover TRAIN, VAL and TEST


def read_video(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.asarray(frames)


def tracings(root: Path) -> dict[str, dict[int, np.ndarray]]:
    table = pd.read_csv(root / "VolumeTracings.csv")
    out: dict[str, dict[int, np.ndarray]] = {}
    for (name, frame), rows in table.groupby(["FileName", "Frame"], sort=False):
        out.setdefault(name, {})[int(frame)] = rows[["X1", "Y1", "X2", "Y2"]].to_numpy(dtype=float)
    return out


@pytest.fixture(scope="module")
def echo_dir(tmp_path_factory) -> Path:
    return make_echo_dataset(tmp_path_factory.mktemp("echo") / "EchoNet", n=N, seed=SEED)


def test_filelist_format(echo_dir):
    fl = pd.read_csv(echo_dir / "FileList.csv")
    assert list(fl.columns) == [
        "FileName",
        "EF",
        "ESV",
        "EDV",
        "FrameHeight",
        "FrameWidth",
        "FPS",
        "NumberOfFrames",
        "Split",
    ]
    assert len(fl) == N
    assert set(fl["Split"]) <= {"TRAIN", "VAL", "TEST"} and {"TRAIN", "VAL", "TEST"} <= set(fl["Split"])
    assert (fl["FrameHeight"] == 112).all() and (fl["FrameWidth"] == 112).all()
    meta = pd.read_csv(echo_dir / "synth_meta.csv")
    for _, row in fl.iterrows():
        video = read_video(echo_dir / "Videos" / f"{row['FileName']}.avi")
        assert video.shape[1:] == (112, 112, 3)
        assert len(video) == row["NumberOfFrames"] >= 64
        hr = float(meta.loc[meta["FileName"] == row["FileName"], "hr_bpm"].iloc[0])
        assert row["NumberOfFrames"] / row["FPS"] * hr / 60 >= 2.0  # at least two beats
        assert row["EDV"] > row["ESV"] > 0


def test_tracings_give_filelist_ef_and_volumes(echo_dir):
    fl = pd.read_csv(echo_dir / "FileList.csv").set_index("FileName")
    meta = pd.read_csv(echo_dir / "synth_meta.csv").set_index("FileName")
    traces = tracings(echo_dir)
    assert len(traces) == N
    for name, frames in traces.items():
        stem = name.removesuffix(".avi")
        assert len(frames) == 2 and all(t.shape == (21, 4) for t in frames.values())
        es_frame, ed_frame = list(frames)  # EchoNet order: small (ES) first, large (ED) last
        v_ed = volume_from_tracing(frames[ed_frame])
        v_es = volume_from_tracing(frames[es_frame])
        assert v_ed > v_es
        assert ejection_fraction(v_ed, v_es) == pytest.approx(fl.loc[stem, "EF"], abs=0.5)
        assert ejection_fraction(v_ed, v_es) == pytest.approx(fl.loc[stem, "EF"], abs=1e-3)
        spacing = meta.loc[stem, "mm_per_px"]
        assert volume_from_tracing(frames[ed_frame], spacing) == pytest.approx(fl.loc[stem, "EDV"], rel=1e-4)
        assert 20 < fl.loc[stem, "EDV"] < 400  # mL, plausible human ventricles
        # the long axis is about perpendicular to the chords
        t = frames[ed_frame]
        axis = t[0, 2:] - t[0, :2]
        chords = t[1:, 2:] - t[1:, :2]
        cos = np.abs(chords @ axis) / (np.linalg.norm(chords, axis=1) * np.linalg.norm(axis))
        assert cos.max() < 1e-3


def test_cavity_is_dark_inside_the_traced_contour(echo_dir):
    ratios = []
    for name, frames in tracings(echo_dir).items():
        video = read_video(echo_dir / "Videos" / name)[..., 0].astype(float)
        ed_frame = max(frames, key=lambda f: volume_from_tracing(frames[f]))
        img = video[ed_frame]
        inside = rasterize_tracing(frames[ed_frame], img.shape)
        assert inside.sum() > 200
        ring = ndimage.binary_dilation(inside, iterations=5) & ~ndimage.binary_dilation(inside, iterations=1)
        ratio = img[inside].mean() / img[ring].mean()
        ratios.append(ratio)
        assert ratio < 0.65, f"{name}: cavity/myocardium intensity ratio {ratio:.2f}"
    assert np.mean(ratios) < 0.5


def test_ef_distribution_spans_10_to_80():
    cases = [sample_echo_case(0, i) for i in range(300)]
    efs = np.array([c.ef_target for c in cases])
    assert efs.min() < 15 and efs.max() > 75
    assert efs.min() >= 10 and efs.max() <= 80
    assert 0.1 < np.mean(efs < 40) < 0.5  # reduced hearts are common enough to learn
    tilts = np.array([abs(c.tilt_deg) for c in cases])
    assert np.mean(tilts > 10) > 0.15  # some LV axes are clearly tilted
    assert len({round(c.fps) for c in cases}) > 10 and len({round(c.hr_bpm) for c in cases}) > 30


def test_same_seed_same_files_prefix_and_other_seed_differs(echo_dir, tmp_path):
    again = make_echo_dataset(tmp_path / "again", n=1, seed=SEED)
    fl_all = pd.read_csv(echo_dir / "FileList.csv")
    fl_one = pd.read_csv(again / "FileList.csv")
    pd.testing.assert_frame_equal(fl_all.head(1), fl_one)
    assert (again / "VolumeTracings.csv").read_text().splitlines() == (
        echo_dir / "VolumeTracings.csv"
    ).read_text().splitlines()[:43]
    for name in fl_one["FileName"]:
        a = read_video(echo_dir / "Videos" / f"{name}.avi")
        b = read_video(again / "Videos" / f"{name}.avi")
        assert np.array_equal(a, b)
    other = make_echo_dataset(tmp_path / "other", n=1, seed=SEED + 1)
    a = read_video(echo_dir / "Videos" / "echo_00000.avi")
    b = read_video(other / "Videos" / "echo_00000.avi")
    assert a.shape != b.shape or not np.array_equal(a, b)
    assert pd.read_csv(other / "FileList.csv")["EF"].iloc[0] != fl_all["EF"].iloc[0]


def test_refuses_non_empty_output_and_leaves_nothing_behind(echo_dir):
    before = sorted(p.name for p in echo_dir.parent.iterdir())
    with pytest.raises(InputError, match="not empty"):
        make_echo_dataset(echo_dir, n=1, seed=0)
    with pytest.raises(InputError):
        make_echo_dataset(echo_dir.parent / "x", n=0)
    assert sorted(p.name for p in echo_dir.parent.iterdir()) == before


def test_montage_of_echo_folder(echo_dir, tmp_path):
    out = montage(echo_dir, tmp_path / "m.png", n=3, cols=3)
    img = cv2.imread(str(out))
    assert img.shape[0] > 200 and img.shape[1] > 3 * 2 * 224
    # the green contour is drawn
    green = (img[..., 1] > 200) & (img[..., 0] < 80) & (img[..., 2] < 80)
    assert green.sum() > 100


# ---------------------------------------------------------------------------------------------- the full look


def _inside_and_ring(img: np.ndarray, lines: np.ndarray) -> tuple[float, float]:
    inside = rasterize_tracing(lines, img.shape)
    ring = ndimage.binary_dilation(inside, iterations=5) & ~ndimage.binary_dilation(inside, iterations=1)
    return float(img[inside].mean()), float(img[ring].mean())


@pytest.fixture(scope="module")
def sides(tmp_path_factory) -> dict[str, Path]:
    """The same three cases drawn with the LV on the right (EchoNet) and on the left."""
    root = tmp_path_factory.mktemp("sides")
    return {
        side: make_echo_dataset(root / side, n=3, seed=SEED + 5, convention=side, realism="full")
        for side in ("right", "left")
    }


def test_full_phantom_cavity_is_dark_blood_and_its_wall_brighter_at_ed_and_es(sides):
    for side, root in sides.items():
        fl = pd.read_csv(root / "FileList.csv").set_index("FileName")
        meta = pd.read_csv(root / "synth_meta.csv").set_index("FileName")
        for name, frames in tracings(root).items():
            stem = name.removesuffix(".avi")
            assert meta.loc[stem, "realism"] == "full" and meta.loc[stem, "convention"] == side
            video = read_video(root / "Videos" / name)[..., 0].astype(float)
            assert len(video) == fl.loc[stem, "NumberOfFrames"]
            for f, lines in frames.items():
                inside, ring = _inside_and_ring(video[f], lines)
                assert inside / ring < 0.6, f"{side} {name} frame {f}: cavity/wall {inside:.1f}/{ring:.1f}"
                assert inside < 40  # dark blood pool (uint8 grey)
            es_frame, ed_frame = list(frames)
            assert volume_from_tracing(frames[ed_frame]) > volume_from_tracing(frames[es_frame])
            assert ejection_fraction(
                volume_from_tracing(frames[ed_frame]), volume_from_tracing(frames[es_frame])
            ) == pytest.approx(fl.loc[stem, "EF"], abs=1e-3)
            assert abs(fl.loc[stem, "EF"] - meta.loc[stem, "ef_target"]) < 0.5


def test_left_convention_mirrors_pixels_and_tracings_about_the_image_centre(sides):
    right, left = tracings(sides["right"]), tracings(sides["left"])
    assert list(right) == list(left)
    for name in right:
        assert list(right[name]) == list(left[name])  # same ED / ES frames
        for f, r in right[name].items():
            lt = left[name][f]
            np.testing.assert_allclose(lt[:, [0, 2]], 111 - r[:, [0, 2]], atol=2e-4)
            np.testing.assert_allclose(lt[:, [1, 3]], r[:, [1, 3]], atol=2e-4)
            # the LV (its chord midpoints) sits right of the centre in one and left in the other
            assert r[1:, [0, 2]].mean() > 55.5 > lt[1:, [0, 2]].mean()
        a = read_video(sides["right"] / "Videos" / name)[..., 0].astype(float)
        b = read_video(sides["left"] / "Videos" / name)[..., 0].astype(float)
        mirrored = np.abs(b - a[:, :, ::-1]).mean()
        assert mirrored < 1.0  # the same pixels, mirrored (up to MJPG coding)
        assert np.abs(b - a).mean() > 4 * mirrored
        ed = max(left[name], key=lambda f: volume_from_tracing(left[name][f]))
        inside, ring = _inside_and_ring(b[ed], left[name][ed])  # the dark cavity moved with the labels
        assert inside / ring < 0.6


def test_rotation_about_the_probe_turns_the_tracings_with_the_dark_cavity():
    from sonokit.synth.echo import render_echo, rotate_case

    case = sample_echo_case(SEED, 1, realism="full")
    turned = rotate_case(case, 4.0)
    a, b = render_echo(case), render_echo(turned)
    assert (a.ed_frame, a.es_frame) == (b.ed_frame, b.es_frame)
    frame = image_frame(case.geom, 112)
    c0, r0 = frame.to_px(0.0, 0.0)  # the probe
    t = np.deg2rad(4.0)
    for f in (a.ed_frame, a.es_frame):
        pts = a.tracings_px[f].reshape(-1, 2) - [c0, r0]
        x = pts[:, 0] * np.cos(t) + pts[:, 1] * np.sin(t)
        y = -pts[:, 0] * np.sin(t) + pts[:, 1] * np.cos(t)
        np.testing.assert_allclose(np.stack([x + c0, y + r0], 1), b.tracings_px[f].reshape(-1, 2), atol=2e-3)
        inside, ring = _inside_and_ring(b.frames[f].astype(float), b.tracings_px[f])
        assert inside / ring < 0.6
        assert volume_from_tracing(b.tracings_px[f]) == pytest.approx(
            volume_from_tracing(a.tracings_px[f]), rel=1e-5
        )


def test_lv_side_and_frame_rates_over_many_cases():
    from sonokit.synth.echo import lv_state, lv_tracing_mm, traced_frames

    cases = [sample_echo_case(3, i, convention="both", realism="full") for i in range(200)]
    assert 0.3 < np.mean([c.convention == "left" for c in cases]) < 0.7
    fps = np.array([c.fps for c in cases])
    assert fps.min() >= 20 and fps.max() <= 90 and fps.min() < 25 and fps.max() > 75
    for c in cases:
        assert c.n_frames >= 64 and c.n_frames / c.fps * c.hr_bpm / 60 >= 2.0
        ed, es, _ = traced_frames(c)
        assert es < c.n_frames
    assert np.mean([c.foreshortened for c in cases]) > 0.1
    assert np.ptp([c.rotation_deg for c in cases]) > 6
    assert len({round(c.acq.axial_sigma, 1) for c in cases}) > 5  # speckle size drawn per case
    centres = []
    for c in cases[:80]:  # in millimetres, before any mirroring: septum (X1) left of the lateral wall (X2)
        mm = lv_tracing_mm(c, lv_state(c, 0.0))
        assert (mm[1:, 0] < mm[1:, 2]).all()
        centres.append(mm[1:, [0, 2]].mean())
    assert np.mean(np.array(centres) > 0) > 0.8  # and the LV mostly right of the probe's axis
    assert sample_echo_case(3, 0).realism == "full"  # the default look
    basic = sample_echo_case(3, 0, realism="basic")
    assert (
        basic.realism == "basic"
        and basic.look is None
        and basic.shape is None
        and basic.ef_target == cases[0].ef_target
    )


def test_fps_and_frame_count_recorded_in_filelist(tmp_path):
    root = make_echo_dataset(tmp_path / "e", n=2, seed=1, size=64, realism="full", fps_range=(24.0, 24.0))
    fl = pd.read_csv(root / "FileList.csv")
    assert (fl["FPS"] == 24.0).all()
    for _, row in fl.iterrows():
        cap = cv2.VideoCapture(str(root / "Videos" / f"{row['FileName']}.avi"))
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(24.0, abs=0.01)
        cap.release()
        assert len(read_video(root / "Videos" / f"{row['FileName']}.avi")) == row["NumberOfFrames"]


def test_bad_echo_options_are_refused_before_writing(tmp_path):
    for bad in ({"convention": "up"}, {"realism": "photo"}, {"fps_range": (90.0, 20.0)}):
        with pytest.raises(InputError):
            make_echo_dataset(tmp_path / "x", n=1, **bad)
    assert not (tmp_path / "x").exists()


def test_full_look_item_depends_only_on_seed_and_index(sides, tmp_path):
    one = make_echo_dataset(tmp_path / "one", n=1, seed=SEED + 5, convention="right", realism="full")
    pd.testing.assert_frame_equal(
        pd.read_csv(sides["right"] / "FileList.csv").head(1), pd.read_csv(one / "FileList.csv")
    )
    a = read_video(sides["right"] / "Videos" / "echo_00000.avi")
    assert np.array_equal(a, read_video(one / "Videos" / "echo_00000.avi"))
