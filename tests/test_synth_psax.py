"""Simulated parasternal short-axis frames: boxes on the bright valve, calcium brighter, patient groups."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from sonokit.synth import make_psax_dataset, montage
from sonokit.synth.psax import FRAMES_PER_PATIENT

N = 32
SEED = 0


@pytest.fixture(scope="module")
def psax_dir(tmp_path_factory) -> Path:
    return make_psax_dataset(tmp_path_factory.mktemp("psax") / "psax", n=N, seed=SEED)


def _box(img: np.ndarray, row) -> np.ndarray:
    return img[int(round(row.y1)) : int(round(row.y2)) + 1, int(round(row.x1)) : int(round(row.x2)) + 1]


def test_tables_and_groups(psax_dir):
    boxes = pd.read_csv(psax_dir / "boxes.csv")
    labels = pd.read_csv(psax_dir / "labels.csv")
    assert list(boxes.columns) == ["path", "x1", "y1", "x2", "y2", "label"]
    assert list(labels.columns) == ["path", "label", "group"]
    assert len(boxes) == len(labels) == N
    assert set(boxes["label"]) == {"aortic_valve"}
    assert set(labels["label"]) == {0, 1}
    per_group = labels.groupby("group")
    assert (per_group.size() == FRAMES_PER_PATIENT).all()
    assert (per_group["label"].nunique() == 1).all()  # calcification is a property of the patient
    for _, b in boxes.iterrows():
        img = cv2.imread(str(psax_dir / b["path"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (128, 128) and img.dtype == np.uint8
        assert 0 <= b["x1"] < b["x2"] <= 127 and 0 <= b["y1"] < b["y2"] <= 127
        assert (b["x2"] - b["x1"]) > 8


def test_box_contains_the_bright_valve_and_calcium_is_brighter(psax_dir):
    boxes = pd.read_csv(psax_dir / "boxes.csv")
    labels = pd.read_csv(psax_dir / "labels.csv").set_index("path")
    ratios, bright = [], {0: [], 1: []}
    for _, b in boxes.iterrows():
        img = cv2.imread(str(psax_dir / b["path"]), cv2.IMREAD_GRAYSCALE).astype(float)
        box = _box(img, b)
        ratios.append(box.mean() / img.mean())
        bright[int(labels.loc[b["path"], "label"])].append(int((box >= 235).sum()))
    assert min(ratios) > 1.1 and np.mean(ratios) > 1.5
    assert np.mean(bright[1]) > 2 * np.mean(bright[0]) + 5


def test_determinism(psax_dir, tmp_path):
    again = make_psax_dataset(tmp_path / "again", n=3, seed=SEED)
    other = make_psax_dataset(tmp_path / "other", n=3, seed=SEED + 1)
    for rel in pd.read_csv(again / "labels.csv")["path"]:
        assert (again / rel).read_bytes() == (psax_dir / rel).read_bytes()
        assert (other / rel).read_bytes() != (psax_dir / rel).read_bytes()
    assert (again / "boxes.csv").read_text().splitlines()[1:] == (
        psax_dir / "boxes.csv"
    ).read_text().splitlines()[1:4]


def test_montage(psax_dir, tmp_path):
    img = cv2.imread(str(montage(psax_dir, tmp_path / "m.png", n=6, cols=3)))
    assert img.shape[1] > 3 * 256
