"""EchoNet-Dynamic index and dataset on a hand-built folder with known volumes and frame contents.

Tracings are circles: the 21 rows are a vertical long axis (diameter) and 20 horizontal chords at the disc
midpoints, so Simpson's volume is c * r**3 for a fixed c and EF = 100 * (1 - (r_es / r_ed)**3) exactly.
Videos are ramps: frame i is uniformly 6 * i, so decoded values tell which frames a clip took.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sonokit.data import EchoNetDataset, echonet_mean_std, read_echonet
from sonokit.errors import InputError
from sonokit.io import write_video

SIZE = 64
STEP = 6  # MJPG shifts R and B of gray frames by ~2 levels; 6 per frame keeps indices exact


def circle_tracing(r: float, cx: float = SIZE / 2, cy: float = SIZE / 2, n: int = 20) -> np.ndarray:
    rows = [[cx, cy - r, cx, cy + r]]
    for i in range(n):
        y = cy - r + (i + 0.5) * 2 * r / n
        half = math.sqrt(r * r - (y - cy) ** 2)
        rows.append([cx + half, y, cx - half, y])
    return np.array(rows)


def expected_ef(r_ed: float, r_es: float) -> float:
    return 100.0 * (1.0 - (r_es / r_ed) ** 3)


def write_echonet(root: Path, videos: list[dict], write_videos: bool = True) -> Path:
    """videos: dicts with name, split, ef (FileList), n_frames, traces [(frame, radius), ...] in file order."""
    root.mkdir(parents=True, exist_ok=True)
    files, tracings = [], []
    for v in videos:
        files.append(
            {
                "FileName": v["name"],  # without .avi, as in the real FileList
                "EF": v.get("ef", np.nan),
                "ESV": v.get("esv", 40.0),
                "EDV": v.get("edv", 100.0),
                "FrameHeight": SIZE,
                "FrameWidth": SIZE,
                "FPS": 50,
                "NumberOfFrames": v.get("n_frames", 40),
                "Split": v.get("split", "TRAIN"),
            }
        )
        for frame, radius in v.get("traces", []):
            lines = circle_tracing(radius)[: v.get("n_lines", 21)]
            for x1, y1, x2, y2 in lines:
                tracings.append(
                    {"FileName": v["name"] + ".avi", "X1": x1, "Y1": y1, "X2": x2, "Y2": y2, "Frame": frame}
                )
        if write_videos:
            n = v.get("n_frames", 40)
            frames = np.stack([np.full((SIZE, SIZE, 3), STEP * i, np.uint8) for i in range(n)])
            write_video(root / "Videos" / f"{v['name']}.avi", frames, fps=50)
    pd.DataFrame(files).to_csv(root / "FileList.csv", index=False)
    if tracings:
        pd.DataFrame(tracings).to_csv(root / "VolumeTracings.csv", index=False)
    return root


@pytest.fixture(scope="module")
def echo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("echonet")
    return write_echonet(
        root,
        [
            {"name": "0XA", "split": "TRAIN", "ef": 48.8, "n_frames": 40, "traces": [(30, 24.0), (10, 30.0)]},
            {"name": "0XB", "split": "TRAIN", "ef": 70.0, "n_frames": 40, "traces": [(5, 27.0), (20, 18.0)]},
            {"name": "0XC", "split": "VAL", "ef": 60.0, "n_frames": 10, "traces": [(2, 20.0), (7, 15.0)]},
            {"name": "0XD", "split": "TEST", "ef": 55.0, "n_frames": 40, "traces": [(4, 25.0)]},
        ],
    )


def _frame_numbers(clip: torch.Tensor) -> np.ndarray:
    """(C, T, H, W) clip normalised with mean 0, std 255 -> the frame index each time step shows."""
    return (clip[0, :, SIZE // 2, SIZE // 2].numpy() * 255 / STEP).round().astype(int)


def test_read_echonet_index(echo_dir: Path) -> None:
    index = read_echonet(echo_dir)
    assert index.filelist["FileName"].tolist() == ["0XA.avi", "0XB.avi", "0XC.avi", "0XD.avi"]
    assert index.filelist["Split"].tolist() == ["train", "train", "val", "test"]
    assert list(index.tracings["0XA.avi"]) == [30, 10]  # file order kept
    assert index.tracings["0XA.avi"][30].shape == (21, 4)
    assert index.ed_es("0XA") == (10, 30)  # ED = larger volume, although listed second
    assert index.ed_es("0XB.avi") == (5, 20)
    vols = index.volumes("0XA.avi")
    assert vols[30] / vols[10] == pytest.approx((24 / 30) ** 3)
    assert index.tracing_problem("0XD.avi") == "1 traced frame (need 2)"
    with pytest.raises(InputError, match="0XD.avi: 1 traced frame"):
        index.ed_es("0XD")
    assert index.video_path("0XC") == echo_dir / "Videos" / "0XC.avi"


def test_read_echonet_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="FileList.csv not found"):
        read_echonet(tmp_path)
    write_echonet(tmp_path / "e", [{"name": "a", "traces": [(0, 5.0), (1, 4.0)]}], write_videos=False)
    with pytest.raises(InputError, match="1 of 1 videos listed are missing: .*a.avi"):
        read_echonet(tmp_path / "e", check_videos=True)
    with pytest.raises(InputError, match="1 of 1 videos listed are missing"):
        EchoNetDataset(tmp_path / "e", split="train")


def test_one_clip_period_sampling(echo_dir: Path) -> None:
    train = EchoNetDataset(echo_dir, split="train", frames=8, period=2, seed=0)
    assert len(train) == 2
    starts = set()
    for _ in range(6):
        clip, target = train[0]
        assert clip.shape == (3, 8, SIZE, SIZE) and clip.dtype == torch.float32
        idx = _frame_numbers(clip)
        assert np.array_equal(np.diff(idx), [2] * 7)  # every 2nd frame
        assert 0 <= idx[0] <= 40 - 15
        starts.add(int(idx[0]))
    assert len(starts) > 1  # random start in training
    assert target.tolist() == pytest.approx([48.8])

    test = EchoNetDataset(echo_dir, split="test", frames=8, period=3, target=("EF", "EDV"))
    clip, target = test[0]
    assert _frame_numbers(clip).tolist() == [0, 3, 6, 9, 12, 15, 18, 21]  # deterministic start outside train
    assert target.tolist() == pytest.approx([55.0, 100.0])


def test_seeded_starts_repeat(echo_dir: Path) -> None:
    a = EchoNetDataset(echo_dir, split="train", frames=4, period=1, seed=7)
    b = EchoNetDataset(echo_dir, split="train", frames=4, period=1, seed=7)
    assert [_frame_numbers(a[1][0])[0] for _ in range(5)] == [_frame_numbers(b[1][0])[0] for _ in range(5)]


def test_all_clips_and_short_video_padding(echo_dir: Path) -> None:
    ds = EchoNetDataset(echo_dir, split="train", frames=8, period=2, clips="all")
    clips, _ = ds[0]
    assert clips.shape == (40 - 7 * 2, 3, 8, SIZE, SIZE)  # every start position
    assert [_frame_numbers(c)[0] for c in clips] == list(range(26))
    strided = EchoNetDataset(echo_dir, split="train", frames=8, period=2, clips="all", clip_stride=5)[0][0]
    assert [_frame_numbers(c)[0] for c in strided] == [0, 5, 10, 15, 20, 25]
    assert EchoNetDataset(echo_dir, split="train", frames=8, period=2, clips=3, random_start=False)[0][
        0
    ].shape == (
        3,
        3,
        8,
        SIZE,
        SIZE,
    )

    # 0XC has 10 frames; 8 frames every 2nd need 16: zero padding after the end (echonet's choice) or wrapping
    short = EchoNetDataset(echo_dir, split="val", frames=8, period=2)[0][0]
    assert _frame_numbers(short).tolist() == [0, 2, 4, 6, 8, 0, 0, 0]
    wrapped = EchoNetDataset(echo_dir, split="val", frames=8, period=2, temporal_pad="repeat")[0][0]
    assert _frame_numbers(wrapped).tolist() == [0, 2, 4, 6, 8, 0, 2, 4]
    whole = EchoNetDataset(echo_dir, split="val", frames=None, period=2)[0][0]
    assert _frame_numbers(whole).tolist() == [0, 2, 4, 6, 8]


def test_normalisation_pad_and_resize(echo_dir: Path) -> None:
    ds = EchoNetDataset(
        echo_dir, split="test", frames=2, period=10, mean=[30, 30, 30], std=[2, 2, 2], size=32
    )
    clip = ds[0][0]
    assert clip.shape == (3, 2, 32, 32)
    expected = [(0 - 30) / 2, (10 * STEP - 30) / 2]  # frames 0 and 10
    assert clip[:, :, 16, 16].numpy() == pytest.approx(np.array([expected] * 3), abs=1.5)
    padded = EchoNetDataset(echo_dir, split="test", frames=2, period=10, pad=6, size=32, seed=3)
    zeros = [(padded[0][0][0, 1] == 0).float().mean().item() for _ in range(4)]
    assert max(zeros) > 0.1  # shifted content leaves zero border


def test_tracings_and_masks_modes(echo_dir: Path) -> None:
    ds = EchoNetDataset(echo_dir, split="all", mode="tracings")
    assert len(ds) == 3  # 0XD (one traced frame) is left out with a warning
    ed, es, lines = ds[0]
    assert ed.shape == es.shape == (3, SIZE, SIZE) and lines.shape == (2, 21, 4)
    assert float(lines.min()) >= 0.0 and float(lines.max()) <= 1.0
    assert (lines[0, 0, 3] - lines[0, 0, 1]).item() * SIZE == pytest.approx(60.0, abs=1e-4)  # ED diameter
    assert (lines[1, 0, 3] - lines[1, 0, 1]).item() * SIZE == pytest.approx(48.0, abs=1e-4)  # ES diameter
    assert ed[0, SIZE // 2, SIZE // 2].item() * 255 == pytest.approx(10 * STEP, abs=2)  # ED is frame 10

    masks = EchoNetDataset(echo_dir, split="train", mode="masks")
    assert len(masks) == 4
    frame, mask_ed = masks[0]
    _, mask_es = masks[1]
    assert frame.shape == (3, SIZE, SIZE) and mask_ed.shape == (SIZE, SIZE)
    assert mask_ed.sum().item() == pytest.approx(math.pi * 30**2, rel=0.08)
    assert mask_es.sum().item() == pytest.approx(math.pi * 24**2, rel=0.08)
    small = EchoNetDataset(echo_dir, split="train", mode="masks", size=32)[0][1]
    assert small.shape == (32, 32) and small.sum().item() == pytest.approx(math.pi * 15**2, rel=0.1)


def test_mean_std_and_bad_arguments(echo_dir: Path) -> None:
    mean, std = echonet_mean_std(echo_dir, split="train", samples=8)
    values = np.arange(40) * STEP  # both train videos are 40-frame ramps
    assert mean == pytest.approx([values.mean()] * 3, abs=3.0)  # 117; MJPG colour shift is ~2 levels
    assert std == pytest.approx([values.std()] * 3, abs=3.0)  # 69.3
    with pytest.raises(InputError, match="no target column 'GLS'"):
        EchoNetDataset(echo_dir, split="train", target="GLS")
    with pytest.raises(InputError, match="clips must be"):
        EchoNetDataset(echo_dir, split="train", clips=0)
    with pytest.raises(InputError, match="unknown split"):
        EchoNetDataset(echo_dir, split="holdout")
