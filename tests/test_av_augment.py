"""The detector's box-aware augmentation keeps the box on the valve: for each of the paper's augmentations alone
and all together, the transformed box matches the transformed valve mask's box (IoU > 0.8) and contains the
transformed bright valve's centroid, through the same transform and dataset the av-detect task trains with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sonokit.av.boxes import Letterbox, box_iou
from sonokit.av.experiments import AUGMENT_SETS
from sonokit.core.config import resolve_config
from sonokit.tasks import get_task

SIZE = 96
VALVE = (30, 40, 58, 64)  # x1, y1, x2, y2 of the bright square


def _task(augment: dict):
    cls = get_task("av-detect")
    full = {**AUGMENT_SETS["none"], **augment, "brightness": 0.0, "contrast": 0.0, "blur_p": 0.0}
    return cls(
        resolve_config("av-detect", overrides={"size": SIZE, "augment": full}, task_defaults=cls.defaults)
    )


def _frame(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    image = rng.uniform(0.1, 0.3, (1, SIZE, SIZE)).astype(np.float32)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    x1, y1, x2, y2 = VALVE
    image[0, y1:y2, x1:x2] = 1.0
    mask[y1:y2, x1:x2] = 1
    return torch.from_numpy(image), torch.from_numpy(mask)


def _mask_box(mask: torch.Tensor) -> np.ndarray:
    ys, xs = np.nonzero(mask.numpy())
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def _bright_centroid(x: torch.Tensor) -> np.ndarray:
    ys, xs = np.nonzero(x[0].numpy() > 0.75)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("name", ["translation", "zoom", "rotation", "gamma", "all", "translation+rotation"])
def test_each_augmentation_moves_the_box_with_the_valve(name: str) -> None:
    from torchvision import tv_tensors

    task = _task(AUGMENT_SETS[name])
    augment = task.train_augment()
    rng = np.random.default_rng(0)
    moved = 0
    for seed in range(12):
        x, m = _frame(rng)
        boxes = tv_tensors.BoundingBoxes(
            torch.tensor([VALVE], dtype=torch.float32), format="XYXY", canvas_size=(SIZE, SIZE)
        )
        xa, ba, ma = augment(x, boxes, tv_tensors.Mask(m), seed=seed)
        if ma.sum() < 20:  # zoom + translation pushed the valve out of the frame: nothing to check
            continue
        box = ba.as_subclass(torch.Tensor).numpy()[0]
        assert box_iou(box, _mask_box(ma))[0, 0] > 0.8, (name, seed, box, _mask_box(ma))
        cx, cy = _bright_centroid(xa)
        assert box[0] <= cx <= box[2] and box[1] <= cy <= box[3], (name, seed)
        moved += not np.allclose(box, VALVE, atol=0.5)
    if name == "gamma":
        assert moved == 0  # intensity only: the box stays where it was
    else:
        assert moved >= 6  # the geometry really changed in most draws (tiny rotations move < 0.5 px)


def test_detection_dataset_items_keep_the_box_on_the_valve(tmp_path) -> None:
    """End to end through DetectionDataset: PNG on disk (non-square, so letterboxed), all augmentations."""
    import cv2

    rng = np.random.default_rng(1)
    h, w = 80, 120
    image = rng.integers(20, 70, (h, w)).astype(np.uint8)
    truth = np.array([[50.0, 20.0, 74.0, 46.0]])
    image[20:46, 50:74] = 250
    cv2.imwrite(str(tmp_path / "f.png"), image)
    items = pd.DataFrame({"path": [str(tmp_path / "f.png")], "boxes": [truth], "group": ["p"]})
    task = _task(AUGMENT_SETS["all"])
    ds = task.build_dataset(items, train=True)
    plain = task.build_dataset(items, train=False)[0]
    np.testing.assert_allclose(plain["boxes"][0].numpy(), Letterbox(h, w, SIZE).to_input(truth)[0], atol=1e-4)
    checked = 0
    for epoch in range(16):
        ds.set_epoch(epoch)
        item = ds[0]
        if not item["box_valid"][0]:
            continue
        box = item["boxes"][0].numpy()
        ys, xs = np.nonzero(item["x"][0].numpy() > 0.8)
        if len(xs) < 10:
            continue
        cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
        assert box[0] <= cx <= box[2] and box[1] <= cy <= box[3], (epoch, box, cx, cy)
        checked += 1
    assert checked >= 10
    # seeded per (seed, item, epoch): a fresh dataset draws the same augmentation for the same epoch
    again = task.build_dataset(items, train=True)
    ds.set_epoch(3)
    again.set_epoch(3)
    assert torch.equal(again[0]["x"], ds[0]["x"]) and torch.equal(again[0]["boxes"], ds[0]["boxes"])
