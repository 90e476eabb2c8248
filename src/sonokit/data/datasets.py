"""Torch datasets over the normalised index: one image (or one frame of a cine) per item.

Images are letterboxed (aspect kept, zero padding) rather than stretched: ultrasound sectors and calipers are
geometric, and stretching a 800x540 fetal head into a square changes the very shape a model should read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from sonokit.data.frames import FrameCache, load_frame
from sonokit.data.validate import require_columns, require_known_labels
from sonokit.errors import InputError


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is `size`, then zero-pad the shorter side symmetrically to a square."""
    import cv2

    if image.ndim == 3 and image.shape[2] == 1:  # cv2.resize drops a single channel axis
        return letterbox(image[:, :, 0], size)[:, :, None]
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    out[top : top + nh, left : left + nw] = image
    return out


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) RGB -> (H, W, channels): luminance (ITU-R BT.601) for 1, replication for 3."""
    import cv2

    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels}")
    if image.ndim == 2:
        return image[:, :, None] if channels == 1 else np.repeat(image[:, :, None], 3, axis=2)
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    return image


class ImageDataset(torch.utils.data.Dataset):
    """Items (float tensor (C, size, size) in [0, 1], int class index) from a df with `path[, frame], label`.

    `classes=None` makes the target the label as a float (regression on a table, e.g. head circumference).
    Rows without a label column get target -1 (prediction). `transform` runs on the tensor (torchvision v2).
    """

    def __init__(
        self,
        df: pd.DataFrame,
        classes: Sequence[str] | None,
        size: int,
        channels: int = 1,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: FrameCache | None = None,
    ) -> None:
        require_columns(df.columns, ["path"], "index")
        if channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, got {channels}")
        self.df = df.reset_index(drop=True)
        self.classes = list(classes) if classes is not None else None
        self.size = int(size)
        self.channels = channels
        self.transform = transform
        self.cache = cache if cache is not None else FrameCache()
        self.paths = self.df["path"].astype(str).tolist()
        self.frames = (
            pd.to_numeric(self.df["frame"]).fillna(0).astype(int).tolist()
            if "frame" in self.df.columns
            else [0] * len(self.df)
        )
        self.targets = self._targets()

    def _targets(self) -> np.ndarray:
        if "label" not in self.df.columns:
            return np.full(len(self.df), -1, dtype=np.int64)
        labels = self.df["label"].astype(str)
        if self.classes is None:
            values = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float32)
            if not np.isfinite(values).all():
                raise InputError("regression targets (classes=None) need numeric labels", "index")
            return values
        require_known_labels(labels, self.classes, "index")
        lookup = {str(c): i for i, c in enumerate(self.classes)}
        return labels.map(lookup).to_numpy(dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        """The letterboxed uint8 (size, size, C) image of item `index` (also used by explain/predict)."""
        path = self.paths[index]
        try:
            image = load_frame(path, self.frames[index], self.cache)
        except InputError:
            raise
        except Exception as err:  # decoders raise all sorts; the user needs the file name
            raise InputError(f"cannot read image: {err}", path) from err
        return letterbox(to_channels(np.asarray(image), self.channels), self.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | float]:
        image = self.load(index)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
        if self.transform is not None:
            tensor = self.transform(tensor)
        target = self.targets[index]
        return tensor, (float(target) if self.classes is None and "label" in self.df.columns else int(target))
