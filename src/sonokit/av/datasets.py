"""Torch datasets of the two av tasks: letterboxed frames with valve boxes, and valve crops with labels.

Boxes travel through augmentation as tv_tensors.BoundingBoxes, so translation, zoom and rotation move them with
the pixels (v2's RandomAffine; a rotated box becomes the box around its rotated corners). Augmentation is
seeded per (run seed, item, epoch) like every other sonokit dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from sonokit.av.boxes import Letterbox
from sonokit.av.data import crop, crop_input
from sonokit.data.cache import PreprocessedCache
from sonokit.data.frames import GrayRecipe, LetterboxRecipe
from sonokit.errors import InputError

MIN_BOX_SIDE = 1.0  # input pixels: a box squeezed thinner by clamping at the border no longer counts


def _frame(items: pd.DataFrame, i: int) -> int:
    if "frame" not in items.columns:
        return 0
    f = items["frame"].iloc[i]
    return int(f) if pd.notna(f) and str(f) != "" else 0


class DetectionDataset(torch.utils.data.Dataset):
    """Items {"x" (1, S, S) float [0, 1], "boxes" (M, 4) input px, "box_valid" (M,), "geo", "hw", "y", "index"}.

    `geo` = (sx, sy, left, top) maps input pixels back to the original image of size `hw` = (h, w). "y" is 1 for labelled frames
    (valve or not) and -1 for new, unlabelled files. M is the most boxes any item of this dataset has (>= 1).
    """

    def __init__(
        self,
        items: pd.DataFrame,
        size: int,
        augment: Callable[..., Any] | None = None,
        seed: int = 0,
    ) -> None:
        self.items = items.reset_index(drop=True)
        self.size = int(size)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.labelled = "boxes" in self.items.columns
        self.cache = PreprocessedCache(LetterboxRecipe(self.size, 1))  # == letterbox_gray(read_gray(...))
        self.max_boxes = max([1] + [len(b) for b in self.items["boxes"]]) if self.labelled else 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> tuple[np.ndarray, Letterbox, np.ndarray]:
        """(letterboxed uint8 (S, S), its map, boxes (n, 4) in input pixels) of item i."""
        entry = self.cache.entry(self.items["path"].iloc[i])
        frame = _frame(self.items, i)
        if not 0 <= frame < len(entry.frames):
            raise InputError(
                f"frame {frame} out of range: the file has {len(entry.frames)} frames",
                self.items["path"].iloc[i],
            )
        lb = np.array(entry.frames[frame][:, :, 0])
        geo = Letterbox(int(entry.meta["height"]), int(entry.meta["width"]), self.size)
        boxes = geo.to_input(self.items["boxes"].iloc[i]) if self.labelled else np.zeros((0, 4))
        return lb, geo, boxes

    def __getitem__(self, i: int) -> dict[str, Any]:
        from torchvision import tv_tensors

        image, geo, boxes = self.load(i)
        x = torch.from_numpy(image).float().div_(255.0)[None]
        bb = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if self.augment is not None:
            from sonokit.augment import derive_seed

            x, bbt = self.augment(
                x,
                tv_tensors.BoundingBoxes(bb, format="XYXY", canvas_size=(self.size, self.size)),
                seed=derive_seed(self.seed, i, self.epoch),
            )
            bb = bbt.as_subclass(torch.Tensor)
            keep = ((bb[:, 2] - bb[:, 0]) >= MIN_BOX_SIDE) & ((bb[:, 3] - bb[:, 1]) >= MIN_BOX_SIDE)
            bb = bb[keep]
        padded = torch.zeros(self.max_boxes, 4)
        valid = torch.zeros(self.max_boxes, dtype=torch.bool)
        padded[: len(bb)] = bb
        valid[: len(bb)] = True
        return {
            "x": x,
            "boxes": padded,
            "box_valid": valid,
            "geo": torch.as_tensor(geo.as_array(), dtype=torch.float64),
            "hw": torch.tensor([geo.height, geo.width], dtype=torch.float64),
            "y": torch.tensor(1 if self.labelled else -1),
            "index": i,
        }


class CropDataset(torch.utils.data.Dataset):
    """(x (1, S, S) float [0, 1], class index) of valve crops: the box in x1..y2 enlarged by `margin`.

    A row whose box is missing (NaN) is used whole: a file that is already a crop. `load(i)` gives the
    letterboxed uint8 crop (S, S, 1) the model sees (Grad-CAM overlays use it). `jitter` > 0 moves the box's
    sides when `item` is given a seed (training only).
    """

    def __init__(
        self,
        items: pd.DataFrame,
        classes: list[str] | None,
        size: int,
        margin: float,
        noise_reduction: bool = False,
        jitter: float = 0.0,
    ) -> None:
        self.items = items.reset_index(drop=True)
        self.classes = classes
        self.jitter = float(jitter)
        self.size = int(size)
        self.margin = float(margin)
        self.noise_reduction = bool(noise_reduction)
        self.cache = PreprocessedCache(GrayRecipe())  # crops need the original pixels, decoded once
        if "label" in self.items.columns and classes is not None:
            lookup = {c: k for k, c in enumerate(classes)}
            labels = self.items["label"].astype(str)
            unknown = sorted(set(labels) - set(lookup))
            if unknown:
                raise InputError(f"labels {unknown} are not among the classes {classes}")
            self.targets = labels.map(lookup).to_numpy(np.int64)
        else:
            self.targets = np.full(len(self.items), -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def box(self, i: int, jitter_seed: int | None = None) -> np.ndarray | None:
        if not {"x1", "y1", "x2", "y2"} <= set(self.items.columns):
            return None
        box = self.items.loc[i, ["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
        if jitter_seed is None or not self.jitter or not np.all(np.isfinite(box)):
            return box
        return jitter_box(box, self.jitter, np.random.default_rng(jitter_seed))

    def raw_crop(self, i: int, jitter_seed: int | None = None) -> np.ndarray:
        image = self.cache.frame(self.items["path"].iloc[i], _frame(self.items, i))
        return crop(image, self.box(i, jitter_seed), self.margin)[0]

    def load(self, i: int, jitter_seed: int | None = None) -> np.ndarray:
        return crop_input(self.raw_crop(i, jitter_seed), self.size, self.noise_reduction)[:, :, None]

    def item(self, i: int, jitter_seed: int | None = None) -> tuple[torch.Tensor, int]:
        x = (
            torch.from_numpy(np.ascontiguousarray(self.load(i, jitter_seed).transpose(2, 0, 1)))
            .float()
            .div_(255.0)
        )
        return x, int(self.targets[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.item(i)


def jitter_box(box: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Move each side of the box by up to `amount` x the box's size (at least 2 px wide and high remain).

    A detector's box is never the annotator's: training on slightly wrong boxes keeps the classifier from
    reading the crop's scale or framing, which differ between the two.
    """
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    d = rng.uniform(-amount, amount, 4) * np.array([w, h, w, h])
    out = box + d
    if out[2] - out[0] < 2:
        out[[0, 2]] = box[[0, 2]]
    if out[3] - out[1] < 2:
        out[[1, 3]] = box[[1, 3]]
    return out


class CropItemDataset(torch.utils.data.Dataset):
    """The training wrapper of CropDataset: box jitter and image augmentation, both seeded per (seed, item, epoch),
    giving the same dict items as sonokit.tasks.base.ItemDataset."""

    def __init__(
        self, base: CropDataset, augment: Callable[..., Any] | None, seed: int, jitter: bool
    ) -> None:
        self.base = base
        self.augment = augment
        self.seed = seed
        self.jitter = jitter
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from sonokit.augment import derive_seed

        seed = derive_seed(self.seed, index, self.epoch)
        x, y = self.base.item(index, seed if self.jitter else None)
        if self.augment is not None:
            x = self.augment(x, seed=seed)
        return {"x": x, "y": torch.as_tensor(y), "index": index}
