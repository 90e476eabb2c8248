"""`--split-col none`: a dataset's own split column (EchoNet's FileList Split, a table's split) is ignored and
every row is split by patient with the seed, as for a dataset without one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sonokit.core.config import resolve_config
from sonokit.data.splits import assign_splits
from sonokit.synth import make_echo_dataset
from sonokit.tasks import get_task

N = 12


@pytest.fixture(scope="module")
def echo_all_train(tmp_path_factory) -> Path:
    """A small simulated EchoNet folder whose Split column puts every video in TRAIN (no val, no test)."""
    root = make_echo_dataset(tmp_path_factory.mktemp("echo") / "EchoNet", n=N, seed=3, size=32)
    filelist = pd.read_csv(root / "FileList.csv")
    filelist["Split"] = "TRAIN"
    filelist.to_csv(root / "FileList.csv", index=False)
    return root


def _index(task: str, data: Path, **overrides) -> pd.DataFrame:
    cfg = resolve_config(
        task, overrides={"data": str(data), **overrides}, task_defaults=get_task(task).defaults
    )
    return get_task(task)(cfg).prepare_index()


def test_split_col_none_is_normalised_and_kept_in_the_config() -> None:
    for text in ("none", "None", " NONE "):
        cfg = resolve_config("ef", overrides={"split_col": text})
        assert cfg.split_col == "none" and cfg.ignores_given_splits
    default = resolve_config("ef")
    assert not default.ignores_given_splits and default.split_col == "split"
    assert resolve_config("ef", overrides={"split_col": "none"}).hash() != default.hash()


def test_echonet_split_column_is_used_by_default_and_ignored_with_none(echo_all_train) -> None:
    given = _index("ef", echo_all_train, seed=0)
    assert set(given["split"]) == {"train", "val"}  # the folder's own split: all train (val carved), no test

    drawn = _index("ef", echo_all_train, split_col="none", seed=0)
    assert set(drawn["split"]) == {"train", "val", "test"}
    # exactly the project's seeded patient-wise splitter on the same rows with no split given
    cfg = resolve_config("ef")
    expected = assign_splits(
        given.drop(columns="split").assign(split=""),
        (1 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction),
        seed=0,
    )
    assert drawn["split"].tolist() == expected["split"].tolist()
    assert drawn.groupby("group")["split"].nunique().max() == 1  # a patient is never divided
    again = _index("ef", echo_all_train, split_col="none", seed=0)
    assert again["split"].tolist() == drawn["split"].tolist()  # same seed, same splits


def test_table_split_column_is_ignored_with_none(tmp_path) -> None:
    from PIL import Image

    rows = []
    for i in range(20):
        path = tmp_path / f"img_{i:02d}.png"
        Image.new("L", (16, 16), color=i * 10).save(path)
        rows.append({"path": path.name, "label": "ab"[i % 2], "group": f"P{i // 2:02d}", "split": "train"})
    pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)

    given = _index("classify", tmp_path / "table.csv")
    assert "test" not in set(given["split"])
    drawn = _index("classify", tmp_path / "table.csv", split_col="none")
    assert set(drawn["split"]) == {"train", "val", "test"}
    assert drawn.groupby("group")["split"].nunique().max() == 1
