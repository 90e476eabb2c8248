"""Items and datasets of the echo tasks: clips for video EF, traced (and untraced) frames for the LV models.

The index is one row per video (path, ef, group, split, fps, n_frames); tasks expand it into item rows:
    ef:          one row per video in training (a random clip each epoch), one row per clip start elsewhere
                 (the all-clips protocol; the one-clip protocol picks one of them);
    lv-seg/trace: one row per traced frame (ED, ES) and, for the splits evaluated on whole cines, one row per
                 frame, so ED/ES detection and EF per beat are measured on the same cines users will bring.
Datasets return dict items {"x", "y", "index", ...} as the engine expects (sonokit.tasks.base).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sonokit.augment.geometry import FrameAugment, random_shift, warp_points
from sonokit.augment.seeds import item_rng
from sonokit.echo.frames import PreparedStore, to_channels
from sonokit.echo.tracing import canonical_tracing, map_tracing
from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

INDEX_COLUMNS = ["path", "name", "ef", "label", "group", "split", "fps", "n_frames"]


def is_echonet(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "FileList.csv").is_file()


def read_echo_index(data: str | Path, need_ef: bool = True) -> tuple[pd.DataFrame, Any]:
    """(index rows, EchoNetIndex or None) from an EchoNet-Dynamic folder or a table (path, label = EF).

    `label` is the heart-function class of the EF: splits are assigned stratified by it, never by raw EF.
    """
    from sonokit.clinical import heart_function_class

    echonet = None
    if is_echonet(data):
        from sonokit.data.echonet import read_echonet

        echonet = read_echonet(data, check_videos=True)
        fl = echonet.filelist
        df = pd.DataFrame(
            {
                "path": [str(echonet.video_path(n)) for n in fl["FileName"]],
                "name": fl["FileName"].astype(str),
                "ef": pd.to_numeric(fl["EF"], errors="coerce") if "EF" in fl.columns else np.nan,
                "group": fl["FileName"].astype(str).str.replace(r"\.avi$", "", regex=True),
                "split": fl["Split"].astype(str) if "Split" in fl.columns else "",
                "fps": pd.to_numeric(fl["FPS"], errors="coerce") if "FPS" in fl.columns else np.nan,
                "n_frames": pd.to_numeric(fl["NumberOfFrames"], errors="coerce")
                if "NumberOfFrames" in fl.columns
                else np.nan,
            }
        )
    else:
        from sonokit.data import load_index

        table = load_index(data)
        if "label" not in table.columns:
            raise InputError("the table has no EF column (label)", data)
        df = pd.DataFrame(
            {
                "path": table["path"].astype(str),
                "name": table["path"].map(lambda p: Path(p).name),
                "ef": pd.to_numeric(table["label"], errors="coerce"),
                "group": table["group"].astype(str)
                if "group" in table.columns
                else table["path"].astype(str),
                "split": table["split"].astype(str) if "split" in table.columns else "",
                "fps": np.nan,
                "n_frames": np.nan,
            }
        )
    bad = ~np.isfinite(df["ef"].to_numpy(float))
    if need_ef and bad.any():
        from sonokit.data.validate import listing

        raise InputError(
            f"{int(bad.sum())} videos without a numeric EF: {listing(df.loc[bad, 'name'].tolist())}", data
        )
    df["label"] = [heart_function_class(e) if np.isfinite(e) else "" for e in df["ef"].to_numpy(float)]
    # the source's other columns (site, vendor, EDV ...) ride along for `sonokit evaluate --by`
    source = fl if echonet is not None else table
    used = {"FileName", "EF", "Split", "FPS", "NumberOfFrames"} if echonet is not None else {"label"}
    extra = [c for c in source.columns if c not in used and c not in INDEX_COLUMNS]
    df = pd.concat([df[INDEX_COLUMNS].reset_index(drop=True), source[extra].reset_index(drop=True)], axis=1)
    return df.reset_index(drop=True), echonet


def fill_frame_counts(df: pd.DataFrame) -> pd.DataFrame:
    """n_frames and fps from the files where the index lacks them (reads headers only)."""
    from sonokit.echo.frames import count_cine_frames

    df = df.copy()
    missing = ~np.isfinite(pd.to_numeric(df["n_frames"], errors="coerce").to_numpy(float))
    for i in np.flatnonzero(missing):
        n, fps = count_cine_frames(df.at[i, "path"])
        df.at[i, "n_frames"] = n
        if not np.isfinite(float(df.at[i, "fps"] if df.at[i, "fps"] is not None else np.nan)) and fps:
            df.at[i, "fps"] = fps
    return df


# ---------------------------------------------------------------------------------------------- clips


def clip_starts(n_frames: int, frames: int, period: int, stride: int) -> np.ndarray:
    """Starts of the all-clips protocol: every `stride` frames while a whole clip fits (at least one clip)."""
    span = max(int(n_frames) - (frames - 1) * period, 1)
    return np.arange(0, span, max(1, int(stride)), dtype=np.int64)


def clip_indices(start: int, frames: int, period: int) -> np.ndarray:
    return start + period * np.arange(frames, dtype=np.int64)


def take_clip(video: np.ndarray, start: int, frames: int, period: int, pad: str = "repeat") -> np.ndarray:
    """Frames start, start + period, ... of a (F, H, W[, C]) video.

    A clip longer than the video continues from its first frame ("repeat": a cine is a loop of heartbeats) or
    with black frames ("zero", EchoNet's choice, for its checkpoints).
    """
    idx = clip_indices(start, frames, period)
    if pad == "repeat":
        return video[idx % len(video)]
    inside = idx < len(video)
    out = np.zeros((frames, *video.shape[1:]), dtype=video.dtype)
    out[inside] = video[idx[inside]]
    return out


def clip_tensor(clip: np.ndarray, channels: int) -> torch.Tensor:
    """(T, H, W[, 3]) uint8 -> (C, T, H, W) float32 in [0, 1] (normalisation happens in the task)."""
    x = to_channels(clip, channels)  # (T, H, W, C)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 0, 1, 2))).float().div_(255.0)


class ClipDataset(torch.utils.data.Dataset):
    """Clips of `frames` frames every `period` frames starting at each item row's `clip` frame.

    In training a row stands for its window of starts [clip, clip + stride): the start is drawn at random (seeded
    per item and epoch), so one epoch sees every part of every video once, at a new offset each time.
    """

    def __init__(
        self,
        items: pd.DataFrame,
        size: int,
        channels: int,
        frames: int,
        period: int,
        stride: int = 1,
        temporal_pad: str = "repeat",
        train: bool = False,
        pad: int = 0,
        seed: int = 0,
        store: PreparedStore | None = None,
    ) -> None:
        self.stride = max(1, int(stride))
        self.temporal_pad = temporal_pad
        self.paths = items["path"].astype(str).tolist()
        self.starts = items["clip"].to_numpy(np.int64) if "clip" in items.columns else np.full(len(items), -1)
        ef = pd.to_numeric(items["ef"], errors="coerce").to_numpy(float) if "ef" in items.columns else None
        self.targets = np.where(np.isfinite(ef), ef, -1.0) if ef is not None else np.full(len(items), -1.0)
        self.channels, self.frames, self.period = channels, frames, period
        self.train, self.pad, self.seed, self.epoch = train, int(pad), seed, 0
        self.store = store or PreparedStore(size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video = self.store.get(self.paths[index]).frames
        start = int(self.starts[index])
        rng = item_rng(self.seed, index, self.epoch) if self.train else None
        span = max(len(video) - (self.frames - 1) * self.period, 1)
        if start < 0:  # no start given: the middle one
            start = (span - 1) // 2
        if rng is not None:
            lo = min(start, span - 1)
            start = int(rng.integers(lo, max(lo + 1, min(start + self.stride, span))))
        x = clip_tensor(take_clip(video, start, self.frames, self.period, self.temporal_pad), self.channels)
        if rng is not None:
            x = random_shift(x, rng, self.pad)  # every frame of the clip by the same pixels
        return {"x": x, "y": torch.tensor(self.targets[index], dtype=torch.float32), "index": index}


# ---------------------------------------------------------------------------------------------- frames


class FrameDataset(torch.utils.data.Dataset):
    """Single frames with their LV target when traced: a mask ("mask") or canonical normalised lines ("lines").

    Untraced frames (whole-cine evaluation, prediction) carry has_target False and a zero target. Training
    augmentation (`sonokit.augment.geometry.FrameAugment`, seeded per item and epoch) is a mild rotation / scale /
    shift applied to image and tracing alike, and a gain / gamma change. With `hflip` half the frames are
    mirrored, image and tracing together (the LV moves to the screen's other side, as in the LV-left convention:
    the model learns both). With `appearance` the frame is also restyled (`sonokit.augment.appearance`:
    grey-level curve, gain, depth gradient, speckle grain, blur, noise), the domain randomisation that lets a
    model trained on simulated cines meet real ones.
    The mask is rasterised from the moved tracing, so image and mask always move together.
    """

    def __init__(
        self,
        items: pd.DataFrame,
        size: int,
        channels: int,
        target: str,
        train: bool = False,
        seed: int = 0,
        augment_strength: float = 1.0,
        store: PreparedStore | None = None,
        appearance: bool = False,
        hflip: bool = False,
    ) -> None:
        if target not in ("mask", "lines"):
            raise ValueError(target)
        self.appearance, self.hflip = bool(appearance), bool(hflip)
        self.paths = items["path"].astype(str).tolist()
        self.frames = items["frame"].to_numpy(np.int64)
        self.lines = list(items["lines"]) if "lines" in items.columns else [None] * len(items)
        self.size, self.channels, self.target = size, channels, target
        self.train, self.seed, self.epoch, self.strength = train, seed, 0, augment_strength
        self.store = store or PreparedStore(size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(frame (S, S, C) uint8, tracing in model pixels or None), augmented when training."""
        cine = self.store.get(self.paths[index])
        f = int(self.frames[index])
        if not 0 <= f < len(cine.frames):
            raise InputError(f"frame {f} is past the cine's {len(cine.frames)} frames", self.paths[index])
        image = to_channels(cine.frames[f : f + 1], self.channels)[0]
        lines = self.lines[index]
        if lines is not None:
            lines = map_tracing(lines, cine.transform.to_crop)
        if self.train and self.strength > 0:
            augment = FrameAugment(self.size, self.strength, hflip=self.hflip, appearance=self.appearance)
            image, m = augment(image, item_rng(self.seed, index, self.epoch))
            if lines is not None:  # the tracing's end points move with the frame
                lines = map_tracing(lines, lambda p: warp_points(p, m))
        return image, lines

    def __getitem__(self, index: int) -> dict[str, Any]:
        from sonokit.clinical import rasterize_tracing

        image, lines = self.sample(index)
        x = (
            torch.from_numpy(np.array(image.transpose(2, 0, 1))).float().div_(255.0)
        )  # a copy: the cache is read-only
        has = lines is not None
        if self.target == "mask":
            mask = (
                rasterize_tracing(lines, (self.size, self.size)) if has else np.zeros((self.size,) * 2, bool)
            )
            y = torch.from_numpy(mask.astype(np.float32))[None]
        else:
            canon = canonical_tracing(lines) / self.size if has else np.zeros((21, 4))
            y = torch.from_numpy(canon.reshape(-1).astype(np.float32))
        return {"x": x, "y": y, "has_target": torch.tensor(has), "index": index}
