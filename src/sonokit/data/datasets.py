"""Torch datasets over the normalised index: one image (or one frame of a cine) per item.

Items come from the preprocessed cache (`sonokit.data.cache`): each file is decoded and letterboxed once, and
every epoch, fold and later run memory-maps the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from sonokit.data.cache import PreprocessedCache
from sonokit.data.frames import LetterboxRecipe
from sonokit.data.validate import require_columns, require_known_labels
from sonokit.errors import InputError
from sonokit.preprocess.resize import letterbox, to_channels

__all__ = ["ImageDataset", "letterbox", "to_channels"]


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
        cache: PreprocessedCache | None = None,
    ) -> None:
        require_columns(df.columns, ["path"], "index")
        if channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, got {channels}")
        self.df = df.reset_index(drop=True)
        self.classes = list(classes) if classes is not None else None
        self.size = int(size)
        self.channels = channels
        self.transform = transform
        self.cache = cache if cache is not None else PreprocessedCache(LetterboxRecipe(self.size, channels))
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
        return np.array(self.cache.frame(self.paths[index], self.frames[index]))  # a writable copy of the map

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | float]:
        image = self.load(index)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
        if self.transform is not None:
            tensor = self.transform(tensor)
        target = self.targets[index]
        return tensor, (float(target) if self.classes is None and "label" in self.df.columns else int(target))
