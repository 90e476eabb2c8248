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

from sonokit.data import read_echonet
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
