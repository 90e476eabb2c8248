"""Dataset readers, patient-level splits and torch datasets.

Every reader returns the same index DataFrame (path, label, group, split + extras) so tasks never parse formats.
Torch-based names (ImageDataset) load lazily: reading a table stays light.
"""

from __future__ import annotations

from typing import Any

from sonokit.data.boxes import read_boxes
from sonokit.data.echonet import EchoNetIndex, read_echonet
from sonokit.data.fetal_planes import read_fetal_planes
from sonokit.data.frames import FrameCache, expand_video_frames
from sonokit.data.hc18 import read_hc18
from sonokit.data.image_folder import read_image_folder
from sonokit.data.index import detect_format, load_index
from sonokit.data.splits import (
    assign_splits,
    balanced_group_split,
    oversample_minority,
    stratified_group_kfold,
)
from sonokit.data.tables import class_names, read_table

_LAZY = {
    "ImageDataset": "sonokit.data.datasets",
}

__all__ = [
    "EchoNetIndex",
    "FrameCache",
    "ImageDataset",
    "assign_splits",
    "balanced_group_split",
    "class_names",
    "detect_format",
    "expand_video_frames",
    "load_index",
    "oversample_minority",
    "read_boxes",
    "read_echonet",
    "read_fetal_planes",
    "read_hc18",
    "read_image_folder",
    "read_table",
    "stratified_group_kfold",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
