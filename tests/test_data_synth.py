"""The simulator writes the real datasets' formats: the same readers must take its folders unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sonokit.data import (
    ImageDataset,
    assign_splits,
    class_names,
    expand_video_frames,
    load_index,
    read_boxes,
    read_echonet,
    read_table,
)
from sonokit.data.echonet_simpson import simpson_table
from sonokit.synth import make_dataset


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


def test_synth_echo_through_read_echonet_and_dataset(synth_root: Path) -> None:
    root = make_dataset("echo", synth_root / "echo", n=3, seed=0, size=64)
    index = read_echonet(root, check_videos=True)
    meta = pd.read_csv(root / "synth_meta.csv")
    assert len(index.filelist) == 3
    for _, row in meta.iterrows():
        # the simulator writes ES first; ED must still come out as the larger volume
        assert index.ed_es(row["FileName"]) == (row["ed_frame"], row["es_frame"])
    table, problems = simpson_table(index)
    assert not problems and table["EF_diff"].abs().max() < 0.01  # FileList EF is Simpson's EF by construction

    # the ef task's own dataset reads the folder: one clip per row, its EF as the target
    from sonokit.core.config import resolve_config
    from sonokit.tasks import get_task

    cfg = resolve_config(
        "ef", overrides={"data": str(root), "size": 64, "options": {"frames": 8, "period": 2}}
    )
    task = get_task("ef")(cfg)
    items = task.expand(task.prepare_index())
    item = task.build_dataset(items, train=False)[0]
    assert tuple(item["x"].shape) == (3, 8, 64, 64)
    ef = index.filelist.set_index("FileName")["EF"]
    assert float(item["y"]) == pytest.approx(float(ef[Path(items["path"].iloc[0]).name]), abs=1e-4)


def test_synth_fetal_lus_psax_through_the_table_readers(synth_root: Path) -> None:
    fetal = load_index(make_dataset("fetal-planes", synth_root / "fp", n=12, seed=0, size=48))
    assert len(fetal) == 12 and set(fetal["split"]) <= {"train", "test"}
    assert set(class_names(fetal)) <= {
        "Fetal abdomen",
        "Fetal brain",
        "Fetal femur",
        "Fetal thorax",
        "Maternal cervix",
        "Other",
    }
    with_val = assign_splits(fetal, seed=0, n_trials=100)
    assert with_val.groupby("group")["split"].nunique().max() == 1

    lus_root = make_dataset("lus", synth_root / "lus", n=3, seed=0, size=48)
    lus = read_table(lus_root / "lus.csv", classes=["0", "1", "2", "3"])
    frames = expand_video_frames(lus, every=4)
    assert len(frames) > len(lus) and frames.groupby("path")["frame"].min().eq(0).all()
    x, y = ImageDataset(frames, classes=["0", "1", "2", "3"], size=32)[len(frames) - 1]
    assert x.shape == (1, 32, 32) and 0 <= y <= 3 and float(x.max()) > 0

    psax_root = make_dataset("psax", synth_root / "psax", n=4, seed=0, size=48)
    boxes = read_boxes(psax_root / "boxes.csv")
    assert len(boxes) >= 1 and (boxes["x2"] <= 48).all() and (boxes["y2"] <= 48).all()
    labels = read_table(psax_root / "labels.csv", classes=["0", "1"])
    assert np.isin(boxes["path"], labels["path"]).all()
