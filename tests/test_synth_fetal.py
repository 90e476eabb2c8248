"""Simulated FETAL_PLANES_DB: the CSV parses like the real one, all planes, grayscale images, determinism."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from sonokit.synth import make_fetal_dataset, montage
from sonokit.synth.fetal import PLANES

N = 12
SEED = 11


@pytest.fixture(scope="module")
def fetal_dir(tmp_path_factory) -> Path:
    return make_fetal_dataset(tmp_path_factory.mktemp("fetal") / "FETAL", n=N, seed=SEED)


def test_csv_layout_and_planes(fetal_dir):
    raw = (fetal_dir / "FETAL_PLANES_DB_data.csv").read_text().splitlines()
    assert raw[0] == "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train"
    table = pd.read_csv(fetal_dir / "FETAL_PLANES_DB_data.csv", sep=";")
    assert len(table) == N
    assert set(table["Plane"]) == {
        "Fetal abdomen",
        "Fetal brain",
        "Fetal femur",
        "Fetal thorax",
        "Maternal cervix",
        "Other",
    }
    assert set(PLANES) == set(table["Plane"])
    brain = table["Plane"] == "Fetal brain"
    assert (table.loc[~brain, "Brain_plane"] == "Not A Brain").all()
    assert set(table.loc[brain, "Brain_plane"]) <= {
        "Trans-thalamic",
        "Trans-ventricular",
        "Trans-cerebellum",
        "Other",
    }
    assert set(table["Train"]) == {0, 1}
    assert (table.groupby("Patient_num")["Train"].nunique() == 1).all()  # split by patient
    assert table["Image_name"].is_unique
    for name in table["Image_name"]:
        img = cv2.imread(str(fetal_dir / "Images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == (160, 160) and img.dtype == np.uint8


def test_planes_differ_in_their_pixels(fetal_dir):
    """Bones shadow and shine: femur images hold more saturated pixels than maternal cervix images."""
    table = pd.read_csv(fetal_dir / "FETAL_PLANES_DB_data.csv", sep=";")
    stats = {}
    for _, row in table.iterrows():
        img = cv2.imread(str(fetal_dir / "Images" / f"{row['Image_name']}.png"), cv2.IMREAD_GRAYSCALE)
        stats.setdefault(row["Plane"], []).append(int((img >= 240).sum()))
    assert np.mean(stats["Fetal brain"]) > np.mean(stats["Maternal cervix"])
    assert np.mean(stats["Fetal femur"]) > np.mean(stats["Maternal cervix"])


def test_same_seed_same_bytes_other_seed_differs(fetal_dir, tmp_path):
    again = make_fetal_dataset(tmp_path / "again", n=3, seed=SEED)
    other = make_fetal_dataset(tmp_path / "other", n=3, seed=SEED + 1)
    names = pd.read_csv(again / "FETAL_PLANES_DB_data.csv", sep=";")["Image_name"]
    for name in names:
        assert (again / "Images" / f"{name}.png").read_bytes() == (
            fetal_dir / "Images" / f"{name}.png"
        ).read_bytes()
    a = sorted(p.read_bytes() for p in (again / "Images").iterdir())
    b = sorted(p.read_bytes() for p in (other / "Images").iterdir())
    assert a != b


def test_montage(fetal_dir, tmp_path):
    img = cv2.imread(str(montage(fetal_dir, tmp_path / "m.png", n=6, cols=3)))
    assert img.shape[1] > 3 * 320
