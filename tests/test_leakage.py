"""Leakage traps (issue 20.3): masks among the inputs are refused, near-duplicates across splits and per-file
groups are warned about, and the metrics say what the bootstrap resampled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from sonokit.core.config import resolve_config
from sonokit.data.leakage import (
    describe_thumbnails,
    mask_like_name,
    near_duplicates,
    phash,
    resample_unit,
    two_level,
)
from sonokit.errors import InputError
from sonokit.preprocess.resize import letterbox
from sonokit.tasks import get_task
from sonokit.train.engine import train


def speckle(rng: np.random.Generator, shape: tuple[int, int] = (40, 48), label: int = 0) -> np.ndarray:
    """A B-mode-like image: Rayleigh speckle with a bright disc (label 0) or bar (label 1) somewhere."""
    img = rng.rayleigh(35, shape).clip(0, 255).astype(np.uint8)
    cx, cy = int(rng.integers(14, shape[1] - 14)), int(rng.integers(12, shape[0] - 12))
    if label == 0:
        cv2.circle(img, (cx, cy), 7, 230, -1)
    else:
        cv2.rectangle(img, (cx - 11, cy - 3), (cx + 11, cy + 3), 230, -1)
    return img


def mask_of(img: np.ndarray) -> np.ndarray:
    return np.where(img > 200, 255, 0).astype(np.uint8)


def breast_folder(root: Path, n: int = 10, masks: bool = True) -> Path:
    """benign/ and malignant/ sub-folders of images, each image with its `*_mask.png` beside it (BUS-style)."""
    rng = np.random.default_rng(1)
    for i in range(n):
        label = i % 2
        folder = root / ("benign", "malignant")[label]
        folder.mkdir(parents=True, exist_ok=True)
        img = speckle(rng, label=label)
        cv2.imwrite(str(folder / f"case{i:02d}.png"), img)
        if masks:
            cv2.imwrite(str(folder / f"case{i:02d}_mask.png"), mask_of(img))
    return root


def config(data: Path, out: Path, **kw):
    values = {
        "data": str(data),
        "out": str(out),
        "size": 32,
        "epochs": 1,
        "batch_size": 8,
        "n_boot": 20,
        "patience": 0,
        "augment": {"enabled": False},
    }
    values.update(kw)
    return resolve_config("classify", overrides=values, task_defaults=get_task("classify").defaults)


# ------------------------------------------------------------------------------------------- the checks


def test_mask_names_are_recognised_and_images_are_not() -> None:
    masks = ["a/x_mask.png", "Masks/mask_0001-s.png", "b/x_seg.png", "c/000_HC_Annotation.png", "masks/x.png"]
    masks += ["d/x_gt.png", "e/x-segmentation.tif"]
    images = ["a/bus_0001-s.png", "b/segment3.png", "c/000_HC.png", "d/0X1A2B3C.avi", "e/lung_segmental.png"]
    assert [mask_like_name(p) for p in masks] == [True] * len(masks)
    assert [mask_like_name(p) for p in images] == [False] * len(images)


def test_two_levels_mark_a_mask_even_after_resizing_but_not_speckle() -> None:
    rng = np.random.default_rng(0)
    img = speckle(rng, (200, 240))
    blob = np.zeros((200, 240), np.uint8)
    cv2.ellipse(blob, (120, 100), (70, 40), 20, 0, 360, 255, -1)
    assert two_level(letterbox(blob, 32)[4:28])  # INTER_AREA leaves grey edges: still a mask
    assert not two_level(letterbox(img, 32))
    assert not two_level(np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_phash_finds_resaved_copies_and_keeps_different_images_apart() -> None:
    rng = np.random.default_rng(0)
    originals = [speckle(rng, (120, 140), i % 2) for i in range(40)]
    copies = []
    for img in originals[:10]:  # JPEG re-save, brightness change, 80 % resize: the copies users make
        jpeg = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], 0)
        copies.append(cv2.resize(np.clip(jpeg.astype(int) + 10, 0, 255).astype(np.uint8), (112, 96)))
    h = np.array([phash(letterbox(i, 64)) for i in originals], dtype=np.uint64)
    hc = np.array([phash(letterbox(i, 64)) for i in copies], dtype=np.uint64)
    found = near_duplicates(hc, h)
    assert found.count == 10 and found.example is not None and found.example[0] == found.example[1]
    assert near_duplicates(h[10:20], h[20:]).count == 0  # different speckle images are not duplicates


def test_resampled_unit_is_patients_only_with_a_group_column() -> None:
    paths = ["/d/a.png", "/d/b.png", "/d/c.png"]
    assert resample_unit(pd.DataFrame({"path": paths, "group": ["a", "b", "c"]})) == "images"
    assert resample_unit(pd.DataFrame({"path": ["/d/a.avi", "/d/b.avi"], "group": ["a", "b"]})) == "videos"
    assert resample_unit(pd.DataFrame({"path": paths, "group": ["p1", "p1", "p2"]})) == "patients"


def test_a_flat_image_folder_is_per_image_even_through_symlinks(tmp_path: Path) -> None:
    from sonokit.data import read_image_folder

    data = breast_folder(tmp_path / "breast", n=4, masks=False)
    (data / "benign" / "linked.png").symlink_to(data / "malignant" / "case01.png")
    assert resample_unit(read_image_folder(data)) == "images"
    (data / "benign" / "p7").mkdir()  # root/<class>/<patient>/<file>: groups are patients
    (data / "benign" / "case00.png").rename(data / "benign" / "p7" / "case00.png")
    assert resample_unit(read_image_folder(data)) == "patients"


# ---------------------------------------------------------------------------- refusing masks in training


def test_masks_next_to_images_are_refused_in_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    data = breast_folder(tmp_path / "breast")
    with pytest.raises(InputError) as info:
        train(config(data, tmp_path / "run"))
    message = str(info.value)
    assert "\n" not in message and "10 of 20 input files look like segmentation masks" in message
    assert "case00_mask.png" in message and "allow_mask_like=true" in message
    assert not (tmp_path / "run").exists()


def test_masks_renamed_like_images_are_caught_by_their_two_grey_levels(tmp_path: Path) -> None:
    data = breast_folder(tmp_path / "breast", masks=False)
    rng = np.random.default_rng(5)
    for i in range(3):  # masks saved under image-like names
        cv2.imwrite(str(data / "benign" / f"extra{i}.png"), mask_of(speckle(rng, (80, 90))))
    with pytest.raises(InputError, match=r"3 of 13 input files .*0 by name, 3 with only two grey levels"):
        train(config(data, tmp_path / "run"))


@pytest.mark.slow
def test_allow_mask_like_trains_and_records_the_count(tmp_path: Path, caplog) -> None:
    data = breast_folder(tmp_path / "breast")
    with caplog.at_level("WARNING", logger="sonokit"):
        run = train(config(data, tmp_path / "run", options={"allow_mask_like": True}))
    assert any("kept because options.allow_mask_like is set" in r.getMessage() for r in caplog.records)
    card = json.loads((run / "model_card.json").read_text())
    assert card["training_data"]["leakage"]["mask_like_inputs"] == 10


def test_cross_validation_refuses_masks_before_writing_anything(tmp_path: Path) -> None:
    data = breast_folder(tmp_path / "breast")
    with pytest.raises(InputError, match="look like segmentation masks"):
        train(config(data, tmp_path / "cv", folds=2))
    assert not (tmp_path / "cv").exists()


def test_cli_refuses_masks_with_one_error_line(tmp_path: Path) -> None:
    data = breast_folder(tmp_path / "breast", n=6)
    env = {**os.environ, "SONOKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "sonokit", "train", "classify", "--data", str(data), "--out", "run"]
    proc = subprocess.run(args + ["--epochs", "1"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and not (tmp_path / "run").exists()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "6 of 12 input files look like segmentation masks" in errors[0]


# ------------------------------------------------------------------- per-file groups and near-duplicates


def copies_table(root: Path, n_patients: int = 12, per_patient: int = 3, groups: bool = False) -> Path:
    """Each patient's images are re-saved copies of one image (slight noise): near-duplicates by design."""
    rng = np.random.default_rng(2)
    (root / "img").mkdir(parents=True)
    rows = []
    for p in range(n_patients):
        base = speckle(rng, (60, 72), p % 2)
        for j in range(per_patient):
            copy = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
            name = f"img/p{p:02d}_{j}.png"
            cv2.imwrite(str(root / name), copy)
            rows.append({"path": name, "label": ("disc", "bar")[p % 2], "group": f"P{p:02d}"})
    table = pd.DataFrame(rows)
    (table if groups else table.drop(columns="group")).to_csv(root / "table.csv", index=False)
    return root / "table.csv"


@pytest.mark.slow
def test_without_patients_near_duplicates_are_counted_and_cis_say_images(tmp_path: Path, caplog) -> None:
    table = copies_table(tmp_path / "data")
    with caplog.at_level("WARNING", logger="sonokit"):
        run = train(config(table, tmp_path / "run", val_fraction=0.2, test_fraction=0.3))
    messages = [r.getMessage() for r in caplog.records]
    per_file = [m for m in messages if "no group (patient) column" in m]
    assert len(per_file) == 1 and "each of the 36 images is its own group" in per_file[0]
    near = [m for m in messages if "near-duplicates of train files" in m and "(test)" in m]
    assert len(near) == 1 and "img/p" in near[0] and "~ img/p" in near[0]
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert metrics["resampled"] == "images" and "resamples of images" in metrics["ci_method"]
    assert metrics["near_duplicates_in_train"] > 0
    card = json.loads((run / "model_card.json").read_text())
    assert card["training_data"]["leakage"]["near_duplicates"]["test"] == metrics["near_duplicates_in_train"]
    assert card["training_data"]["group_unit"] == "images"
    assert "groups per split (images)" in (run / "report.html").read_text()


@pytest.mark.slow
def test_with_a_patient_column_copies_stay_together_and_cis_say_patients(tmp_path: Path, caplog) -> None:
    table = copies_table(tmp_path / "data", groups=True)
    with caplog.at_level("WARNING", logger="sonokit"):
        run = train(config(table, tmp_path / "run", val_fraction=0.2, test_fraction=0.3))
    assert not any("no group (patient) column" in r.getMessage() for r in caplog.records)
    assert not any("near-duplicate" in r.getMessage() for r in caplog.records)
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert metrics["resampled"] == "patients" and "resamples of patients" in metrics["ci_method"]
    assert metrics["near_duplicates_in_train"] == 0


# ---------------------------------------------------------------------------------------- real BUS-BRA


@pytest.fixture(scope="module")
def busbra() -> Path:
    return shared_data("busbra", "Masks")


def _read_letterboxed(path: str) -> tuple[np.ndarray, dict]:
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    return letterbox(gray, 96)[None], {"height": gray.shape[0], "width": gray.shape[1]}


@pytest.mark.shared
def test_busbra_masks_are_refused_and_its_images_are_neither_masks_nor_duplicates(
    busbra: Path, tmp_path: Path
) -> None:
    table = pd.read_csv(busbra / "bus_data.csv")
    one_per_case = table.drop_duplicates("Case").iloc[:300]
    images = [str(busbra / "Images" / f"{i}.png") for i in one_per_case["ID"]]
    masks = [str(busbra / "Masks" / f"{i.replace('bus_', 'mask_')}.png") for i in one_per_case["ID"][:60]]
    ti, tm = describe_thumbnails(images, _read_letterboxed), describe_thumbnails(masks, _read_letterboxed)
    assert not ti.two_level.any() and tm.two_level.all()
    assert near_duplicates(ti.hashes[:150], ti.hashes[150:]).count == 0  # 300 different patients
    assert all(mask_like_name(m) for m in masks) and not any(mask_like_name(i) for i in images)

    rows = [{"path": p, "label": "benign"} for p in images[:20]] + [
        {"path": p, "label": "mask"} for p in masks[:20]
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(InputError, match=r"20 of 40 input files look like .* e\.g\. .*mask_"):
        train(config(tmp_path / "mixed.csv", tmp_path / "run"))
