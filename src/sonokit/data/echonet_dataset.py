"""Torch dataset over an EchoNet-Dynamic folder, following echonet.datasets.Echo's sampling so results compare.

Modes:
    "video"    (clip (C=3, T, H, W) or (n_clips, C, T, H, W), targets (len(target),)) for EF regression;
               T = `frames` frames taken every `period` frames from a start that is random in training.
    "tracings" (ED frame (3, H, W), ES frame (3, H, W), lines (2, 21, 4) as x/W, y/H in [0, 1]) per video.
    "masks"    (frame (3, H, W), mask (H, W) float 0/1) per traced frame: two items per video (ED then ES).
Frames are normalised as (x - mean) / std with mean/std in 0-255 pixel units (defaults 0 and 255, i.e. [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonokit.data.echonet import EchoNetIndex, read_echonet
from sonokit.data.frames import FrameCache, read_video
from sonokit.data.validate import listing, require_files
from sonokit.errors import InputError
from sonokit.utils import get_logger, progress

log = get_logger(__name__)

MODES = ("video", "tracings", "masks")


def _resize_frames(frames: np.ndarray, size: int | None) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., size, size, 3); no-op when size is None or already matching."""
    import cv2

    if size is None or frames.shape[-3:-1] == (size, size):
        return frames
    flat = frames.reshape((-1,) + frames.shape[-3:])
    out = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in flat])
    return out.reshape(frames.shape[:-3] + (size, size, 3))


def _rgb(frames: np.ndarray) -> np.ndarray:
    return frames if frames.ndim == 4 else np.repeat(frames[..., None], 3, axis=-1)


def rasterize(lines: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool LV mask from 21 tracing lines in pixel coordinates of `shape` (sonokit.clinical's rasteriser)."""
    from sonokit.clinical import rasterize_tracing

    return np.asarray(rasterize_tracing(lines, shape), dtype=bool)


class EchoNetDataset(torch.utils.data.Dataset):
    """EchoNet-Dynamic clips, ED/ES tracings or LV masks for one split (see the module docstring)."""

    def __init__(
        self,
        root: str | Path | EchoNetIndex,
        split: str | None = "train",
        target: str | Sequence[str] = ("EF",),
        frames: int | None = 32,
        period: int = 2,
        clips: int | str = 1,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        pad: int | None = None,
        max_length: int | None = None,
        seed: int = 0,
        mode: str = "video",
        size: int | None = None,
        clip_stride: int = 1,
        temporal_pad: str = "zero",
        random_start: bool | None = None,
    ) -> None:
        self.index = root if isinstance(root, EchoNetIndex) else read_echonet(root)
        if mode not in MODES:
            raise InputError(f"unknown EchoNet dataset mode {mode!r} (use one of {', '.join(MODES)})")
        if clips != "all" and (not isinstance(clips, int) or clips < 1):
            raise InputError(f"clips must be a positive int or 'all', got {clips!r}")
        if period < 1 or clip_stride < 1 or (frames is not None and frames < 1):
            raise InputError(
                f"frames, period and clip_stride must be >= 1 (got {frames}, {period}, {clip_stride})"
            )
        if temporal_pad not in ("zero", "repeat"):
            raise InputError(f"temporal_pad must be 'zero' or 'repeat', got {temporal_pad!r}")
        self.split = split
        self.target = (target,) if isinstance(target, str) else tuple(target)
        self.frames, self.period, self.clips = frames, int(period), clips
        self.max_length, self.pad, self.size = max_length, pad, size
        self.clip_stride, self.temporal_pad, self.mode = int(clip_stride), temporal_pad, mode
        self.random_start = (str(split).lower() == "train") if random_start is None else bool(random_start)
        self.mean = np.broadcast_to(np.asarray(0.0 if mean is None else mean, np.float32), (3,)).copy()
        self.std = np.broadcast_to(np.asarray(255.0 if std is None else std, np.float32), (3,)).copy()
        if (self.std <= 0).any():
            raise InputError(f"std must be positive, got {self.std.tolist()}")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._worker_seed: int | None = None
        self.cache = FrameCache(max_videos=2)

        rows = self.index.split(split)
        if rows.empty:
            hint = (
                ""
                if (self.index.filelist["Split"] != "").any()
                else " (FileList has no Split values: use 'all')"
            )
            raise InputError(f"no videos in split {split!r}{hint}", self.index.root / "FileList.csv")
        if mode != "video":
            problems = {n: p for n in rows["FileName"] if (p := self.index.tracing_problem(n)) is not None}
            if problems:
                log.warning(
                    "%d of %d videos in split %r have unusable tracings and are left out (%s)",
                    len(problems), len(rows), split, listing([f"{n}: {p}" for n, p in problems.items()], 3),
                )  # fmt: skip
                rows = rows[~rows["FileName"].isin(problems)]
            if rows.empty:
                raise InputError(
                    f"no videos with usable tracings in split {split!r}", self.index.tracings_csv
                )
        self.rows = rows.reset_index(drop=True)
        self.filenames = self.rows["FileName"].tolist()
        self.paths = [str(self.index.video_path(n)) for n in self.filenames]
        require_files(self.paths, self.index.root / "FileList.csv", what="videos")
        self.targets = self._targets()
        self.ed_es = [self.index.ed_es(n) for n in self.filenames] if mode != "video" else []

    def _targets(self) -> np.ndarray:
        if self.mode != "video" or not self.target:
            return np.zeros((len(self.rows), 0), dtype=np.float32)
        missing = [t for t in self.target if t not in self.rows.columns]
        if missing:
            raise InputError(
                f"FileList has no target column {missing[0]!r}", self.index.root / "FileList.csv"
            )
        values = self.rows[list(self.target)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            names = [self.filenames[i] for i in np.flatnonzero(bad)]
            raise InputError(
                f"{len(names)} videos with an empty or NaN target {list(self.target)}: {listing(names)}",
                self.index.root / "FileList.csv",
            )
        return values

    def __len__(self) -> int:
        return len(self.rows) * (2 if self.mode == "masks" else 1)

    def rng(self) -> np.random.Generator:
        """This process's generator: seeded by `seed`, re-seeded per DataLoader worker and epoch."""
        info = torch.utils.data.get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self._worker_seed = info.seed
            self._rng = np.random.default_rng([self.seed, info.seed % 2**63])
        return self._rng

    def _normalise(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) normalised."""
        x = (frames.astype(np.float32) - self.mean) / self.std
        return np.moveaxis(x, -1, -3)

    def clip_starts(self, n_frames: int) -> tuple[np.ndarray, int]:
        """Start frames of the clips and the clip length, as echonet.datasets.Echo chooses them."""
        length = n_frames // self.period if self.frames is None else self.frames
        if self.max_length is not None:
            length = min(length, self.max_length)
        length = max(1, length)
        span = max(n_frames, length * self.period) - (length - 1) * self.period  # number of valid starts
        if self.clips == "all":
            starts = np.arange(0, span, self.clip_stride)
        elif self.random_start:
            starts = self.rng().integers(0, span, size=self.clips)
        else:
            starts = np.linspace(0, span - 1, self.clips).round().astype(np.int64)
        return starts.astype(np.int64), length

    def clip_indices(self, n_frames: int) -> np.ndarray:
        """(n_clips, T) frame indices; indices past the end are padding (zero or wrapped, see temporal_pad)."""
        starts, length = self.clip_starts(n_frames)
        return starts[:, None] + self.period * np.arange(length)[None, :]

    def _video_item(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        video = _resize_frames(_rgb(read_video(self.paths[i])), self.size)  # (F, H, W, 3)
        n = len(video)
        idx = self.clip_indices(n)
        past_end = idx >= n
        clip = self._normalise(video[np.where(past_end, idx % n, idx)])  # (n_clips, T, 3, H, W)
        if self.temporal_pad == "zero":
            clip[past_end] = 0.0
        clip = np.ascontiguousarray(clip.transpose(0, 2, 1, 3, 4))  # (n_clips, 3, T, H, W)
        if self.pad:
            clip = self._pad_crop(clip)
        x = torch.from_numpy(clip)
        if self.clips == 1:
            x = x[0]
        return x, torch.tensor(self.targets[i])

    def _pad_crop(self, clip: np.ndarray) -> np.ndarray:
        """echonet's augmentation: zero-pad by `pad` pixels, then crop back at a random offset."""
        p = int(self.pad)
        h, w = clip.shape[-2:]
        padded = np.pad(clip, [(0, 0)] * (clip.ndim - 2) + [(p, p), (p, p)])
        dy, dx = self.rng().integers(0, 2 * p + 1, size=2)
        return np.ascontiguousarray(padded[..., dy : dy + h, dx : dx + w])

    def _traced(self, i: int, which: int) -> tuple[np.ndarray, np.ndarray]:
        """(frame uint8 (H, W, 3) at `size`, lines (21, 4) in that frame's pixels) for ED (0) or ES (1)."""
        name = self.filenames[i]
        frame_no = self.ed_es[i][which]
        video = _rgb(self.cache.video(self.paths[i]))
        if not 0 <= frame_no < len(video):
            raise InputError(
                f"traced frame {frame_no} is past the video's {len(video)} frames", self.paths[i]
            )
        frame = video[frame_no]
        h, w = frame.shape[:2]
        lines = self.index.tracings[name][frame_no].astype(np.float32)
        if self.size is not None:
            frame = _resize_frames(frame[None], self.size)[0]
            lines = lines * np.array([self.size / w, self.size / h] * 2, np.float32)
        return frame, lines

    def __getitem__(self, index: int):
        if self.mode == "video":
            return self._video_item(index)
        if self.mode == "tracings":
            (ed, ed_lines), (es, es_lines) = self._traced(index, 0), self._traced(index, 1)
            h, w = ed.shape[:2]
            lines = np.stack([ed_lines, es_lines]) / np.array([w, h, w, h], np.float32)
            return (
                torch.from_numpy(np.ascontiguousarray(self._normalise(ed))),
                torch.from_numpy(np.ascontiguousarray(self._normalise(es))),
                torch.from_numpy(lines.astype(np.float32)),
            )
        frame, lines = self._traced(index // 2, index % 2)
        mask = rasterize(lines, frame.shape[:2]).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(self._normalise(frame))), torch.from_numpy(mask)


def echonet_mean_std(
    root: str | Path | EchoNetIndex, split: str | None = "train", samples: int | None = 128, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (RGB) mean and std in 0-255 units over all pixels of up to `samples` random videos."""
    index = root if isinstance(root, EchoNetIndex) else read_echonet(root)
    names = index.split(split)["FileName"].tolist()
    if not names:
        raise InputError(f"no videos in split {split!r}", index.root / "FileList.csv")
    if samples is not None and len(names) > samples:
        rng = np.random.default_rng(seed)
        names = [names[i] for i in sorted(rng.choice(len(names), samples, replace=False))]
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for name in progress(names, desc="mean/std", unit="video"):
        video = _rgb(read_video(index.video_path(name))).reshape(-1, 3).astype(np.float64)
        total += video.sum(axis=0)
        total_sq += (video**2).sum(axis=0)
        count += len(video)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)
