"""Training augmentation: one typed config (`AugmentConfig`), seeded transforms for images, masks, keypoints, boxes
and clips, image corruptions (augment.corruption) and appearance randomisation (augment.appearance).

    config.py      AugmentConfig, the `augment:` options every task checks against what it applies (no torch)
    seeds.py       derive_seed / item_rng: one sample's random numbers from (seed, index, epoch)
    transforms.py  torchvision v2 pipeline (build_augment): images, Video clips, BoundingBoxes, KeyPoints, Mask
    geometry.py    numpy frames with keypoints / masks (FrameAugment, warp, warp_points) and clip shifts

Names are imported on first use, so reading a config does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AUGMENT_OPTIONS": "config",
    "AugmentConfig": "config",
    "derive_seed": "seeds",
    "item_rng": "seeds",
    "Augment": "transforms",
    "RandomGamma": "transforms",
    "SeededTransform": "transforms",
    "build_augment": "transforms",
    "build_transform": "transforms",
    "FrameAugment": "geometry",
    "random_shift": "geometry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
