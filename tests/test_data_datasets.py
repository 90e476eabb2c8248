"""ImageDataset, frame expansion and the frame cache on real PNG and MJPG AVI files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from sonokit.data import FrameCache, ImageDataset, expand_video_frames
from sonokit.data.cache import PreprocessedCache
from sonokit.data.datasets import letterbox
from sonokit.data.frames import LetterboxRecipe
from sonokit.errors import InputError
from sonokit.io import write_video


def _rgb_png(path: Path, rgb: tuple[int, int, int], shape: tuple[int, int] = (30, 60)) -> str:
    image = np.zeros((*shape, 3), np.uint8)
    image[:] = rgb
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return str(path)


def _ramp_video(path: Path, n: int, step: int = 40) -> str:
    """Frame i is uniformly i * step: decoded values tell which frame was read."""
    frames = np.stack([np.full((16, 16, 3), min(255, i * step), np.uint8) for i in range(n)])
    write_video(path, frames, fps=10)
    return str(path)


def test_letterbox_keeps_aspect_and_pads() -> None:
    image = np.full((30, 60), 200, np.uint8)
    out = letterbox(image, 32)
    assert out.shape == (32, 32)
    rows = np.flatnonzero(out[:, 16] > 0)
    assert (rows[0], rows[-1]) == (8, 23)  # 16 rows of image centred, 8 rows of padding each side
    assert letterbox(image[:, :, None], 32).shape == (32, 32, 1)


def test_image_dataset_luminance_letterbox_targets(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "path": [
                _rgb_png(tmp_path / "red.png", (255, 0, 0)),
                _rgb_png(tmp_path / "green.png", (0, 255, 0)),
            ],
            "label": ["red", "green"],
        }
    )
    ds = ImageDataset(df, classes=["green", "red"], size=32, channels=1)
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and y == 1
    assert x[0, 16, 16].item() == pytest.approx(76 / 255, abs=1 / 255)  # BT.601: 0.299 * 255
    assert x[0, 0, 16].item() == 0.0 and x[0, 31, 16].item() == 0.0  # letterbox padding rows
    assert ds[1][0][0, 16, 16].item() == pytest.approx(150 / 255, abs=1 / 255) and ds[1][1] == 0
    x3, _ = ImageDataset(df, classes=["green", "red"], size=32, channels=3)[0]
    assert x3.shape == (3, 32, 32) and x3[:, 16, 16].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1 / 255)
    flipped = ImageDataset(df, ["green", "red"], 32, transform=lambda t: t.flip(-1))[0][0]
    assert torch.equal(flipped, x.flip(-1))
    with pytest.raises(InputError, match="'red'"):
        ImageDataset(df, classes=["green", "blue"], size=32)


def test_image_dataset_names_a_corrupt_file(tmp_path: Path) -> None:
    good = _rgb_png(tmp_path / "good.png", (10, 10, 10))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    ds = ImageDataset(pd.DataFrame({"path": [good, str(bad)], "label": ["a", "a"]}), ["a"], size=16)
    assert ds[0][0].shape == (1, 16, 16)
    with pytest.raises(InputError, match="broken.png"):
        ds[1]


def test_expand_video_frames_and_read_through_the_cache(tmp_path: Path) -> None:
    video = _ramp_video(tmp_path / "clip.avi", n=6)
    image = _rgb_png(tmp_path / "still.png", (90, 90, 90))
    df = pd.DataFrame({"path": [video, image], "label": ["b", "a"], "group": ["p1", "p2"]})
    frames = expand_video_frames(df, every=2)
    assert frames["frame"].tolist() == [0, 2, 4, 0] and frames["group"].tolist() == ["p1"] * 3 + ["p2"]
    assert expand_video_frames(df, every=1, max_frames=3)["frame"].tolist() == [0, 2, 5, 0]
    labelled = df.assign(frame=[3, np.nan])  # a per-frame label is kept, not re-expanded
    assert expand_video_frames(labelled)["frame"].tolist() == [3, 0]

    cache = PreprocessedCache(LetterboxRecipe(16, 1), root=tmp_path / "cache")
    ds = ImageDataset(frames, classes=["a", "b"], size=16, cache=cache)
    values = [round(ds[i][0][0, 8, 8].item() * 255) for i in range(len(ds))]
    assert values[:3] == pytest.approx([0, 80, 160], abs=3) and values[3] == pytest.approx(90, abs=2)
    assert (cache.builds, cache.hits) == (2, 2)  # the video decoded once for three frames, the image once


def test_frame_cache_evicts_least_recent(tmp_path: Path) -> None:
    a, b = _ramp_video(tmp_path / "a.avi", 3), _ramp_video(tmp_path / "b.avi", 4)
    cache = FrameCache(max_videos=1)
    assert cache.video(a).shape[0] == 3 and cache.video(b).shape[0] == 4
    assert len(cache) == 1 and cache.misses == 2
    cache.frame(a, 1)
    assert cache.misses == 3
    with pytest.raises(InputError, match="frame 7 out of range"):
        cache.frame(a, 7)
    with pytest.raises(InputError, match="missing.avi"):
        expand_video_frames(pd.DataFrame({"path": [str(tmp_path / "missing.avi")], "label": ["a"]}))
