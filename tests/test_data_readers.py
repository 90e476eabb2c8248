"""Index readers on tiny real files: good data, and every bad case a user will hit."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from sonokit.data import (
    class_names,
    detect_format,
    load_index,
    read_boxes,
    read_fetal_planes,
    read_hc18,
    read_image_folder,
    read_table,
)
from sonokit.errors import InputError


def _png(path: Path, value: int = 128, shape: tuple[int, ...] = (12, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full(shape, value, np.uint8))
    return path


def _csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


@pytest.fixture
def table_dir(tmp_path: Path) -> Path:
    for name in ("a", "b", "c", "d"):
        _png(tmp_path / "img" / f"{name}.png")
    return tmp_path


# ---------------------------------------------------------------- read_table


def test_read_table_normalises_paths_splits_groups_and_extras(table_dir: Path) -> None:
    csv = _csv(
        table_dir / "labels.csv",
        """
path,label,group,split,age,patient_code
img/a.png,normal,p1,TRAIN,31,007
img/b.png,normal,p1,Train,40,008
img/c.png,b-lines,p2,VAL,55.5,009
img/d.png, b-lines ,p3,,62,010
""",
    )
    df = read_table(csv)
    assert list(df.columns[:4]) == ["path", "label", "group", "split"]
    assert df["path"].tolist() == [str(table_dir / "img" / f"{n}.png") for n in "abcd"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])
    assert df["split"].tolist() == ["train", "train", "val", ""]
    assert df["label"].tolist() == ["normal", "normal", "b-lines", "b-lines"]  # whitespace stripped
    assert df["group"].tolist() == ["p1", "p1", "p2", "p3"]
    assert df["age"].dtype.kind == "f" and df["age"].sum() == pytest.approx(188.5)
    assert df["patient_code"].tolist() == ["007", "008", "009", "010"]  # identifiers keep leading zeros


def test_read_table_custom_columns_and_default_group(table_dir: Path) -> None:
    csv = _csv(
        table_dir / "t.csv",
        """
file,diagnosis,fold
img/a.png,1,1
img/b.png,0,0
""",
    )
    df = read_table(csv, path_col="file", label_col="diagnosis", split_col="fold")
    assert df["label"].tolist() == ["1", "0"]  # labels stay text, never 1.0
    assert df["split"].tolist() == ["train", "test"]  # 1/0 as FETAL_PLANES_DB writes it
    assert df["group"].tolist() == ["a", "b"]  # no group column: each file is its own group
    unlabeled = read_table(csv, path_col="file", label_col=None)
    assert "label" not in unlabeled.columns and len(unlabeled) == 2


def test_read_table_missing_column_names_it_and_the_csv(table_dir: Path) -> None:
    csv = _csv(table_dir / "t.csv", "file,label\nimg/a.png,x\n")
    with pytest.raises(InputError) as err:
        read_table(csv)
    msg = str(err.value)
    assert "t.csv" in msg and "'path'" in msg and "'file'" in msg  # names the missing and the present columns
    with pytest.raises(InputError, match="'patient'"):
        read_table(_csv(table_dir / "u.csv", "path,label\nimg/a.png,x\n"), group_col="patient")


def test_read_table_lists_missing_files_with_a_count(table_dir: Path) -> None:
    rows = ["path,label", "img/a.png,x"] + [f"img/missing_{i:02d}.png,x" for i in range(14)]
    csv = _csv(table_dir / "t.csv", "\n".join(rows))
    with pytest.raises(InputError) as err:
        read_table(csv)
    msg = str(err.value)
    assert "14 of 15 files listed are missing" in msg
    assert "missing_00.png" in msg and "missing_09.png" in msg and "missing_10.png" not in msg
    assert "(4 more)" in msg
    assert len(read_table(csv, check_files=False)) == 15


def test_read_table_nan_label_reports_csv_lines(table_dir: Path) -> None:
    csv = _csv(table_dir / "t.csv", "path,label\nimg/a.png,x\nimg/b.png,\nimg/c.png,NaN\n")
    with pytest.raises(InputError, match=r"2 rows with an empty or NaN 'label' \(CSV lines 3, 4\)"):
        read_table(csv)


def test_read_table_label_outside_classes(table_dir: Path) -> None:
    csv = _csv(
        table_dir / "t.csv", "path,label\nimg/a.png,cat\nimg/b.png,dog\nimg/c.png,cow\nimg/d.png,cow\n"
    )
    with pytest.raises(InputError) as err:
        read_table(csv, classes=["cat", "dog"])
    assert "2 rows with labels outside the declared classes" in str(err.value) and "'cow'" in str(err.value)
    assert len(read_table(csv, classes=["cat", "dog", "cow"])) == 4


def test_read_table_bad_split_and_empty_table(table_dir: Path) -> None:
    with pytest.raises(InputError, match="not a split"):
        read_table(_csv(table_dir / "t.csv", "path,label,split\nimg/a.png,x,holdout\n"))
    with pytest.raises(InputError, match="no rows"):
        read_table(_csv(table_dir / "e.csv", "path,label\n"))
    with pytest.raises(InputError, match="not found"):
        read_table(table_dir / "nope.csv")


def test_class_names_sorts_numbers_numerically() -> None:
    assert class_names(pd.DataFrame({"label": ["10", "2", "0", "1", "2"]})) == ["0", "1", "2", "10"]
    assert class_names(pd.DataFrame({"label": ["b", "A", "a"]})) == ["A", "a", "b"]
    assert class_names(pd.DataFrame({"label": ["1", "x"]})) == ["1", "x"]


# ---------------------------------------------------------------- image folders


def test_read_image_folder_classes_patients_and_splits(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    _png(root / "normal" / "n1.png")
    _png(root / "normal" / "n2.png")
    _png(root / "pneumonia" / "pat7" / "f1.png")
    _png(root / "pneumonia" / "pat7" / "f2.png")
    (root / "pneumonia" / "notes.txt").write_text("not an image")
    df = read_image_folder(root)
    assert len(df) == 4 and class_names(df) == ["normal", "pneumonia"]
    assert sorted(df["group"]) == ["n1", "n2", "pat7", "pat7"]
    assert set(df["split"]) == {""}
    with pytest.raises(InputError, match="'pneumonia'"):
        read_image_folder(root, classes=["normal"])

    split_root = tmp_path / "split"
    _png(split_root / "train" / "a" / "1.png")
    _png(split_root / "test" / "b" / "2.png")
    df = read_image_folder(split_root)
    assert dict(zip(df["label"], df["split"], strict=True)) == {"a": "train", "b": "test"}


def test_read_image_folder_empty_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "classA").mkdir(parents=True)
    with pytest.raises(InputError, match="no images found"):
        read_image_folder(tmp_path / "empty")


# ---------------------------------------------------------------- FETAL_PLANES_DB


def _fetal_db(root: Path, n_missing: int = 0) -> Path:
    rows = [
        ("Patient00001_Plane1_1_of_2", 1, "Fetal brain", "Trans-thalamic", "Op. 1", "Voluson E6", 1),
        ("Patient00001_Plane1_2_of_2", 1, "Fetal brain", "Trans-cerebellum", "Op. 1", "Voluson E6", 1),
        ("Patient00002_Plane3_1_of_1", 2, "Fetal femur", "Not A Brain", "Op. 2", "Aloka", 0),
        ("Patient00003_Plane6_1_of_1", 3, "Maternal cervix", "Not A Brain", "Other", "Voluson S10", 1),
    ]
    lines = ["Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train "]  # real header: "Train "
    for i, r in enumerate(rows):
        lines.append(";".join(str(v) for v in r))
        if i >= n_missing:
            _png(root / "Images" / f"{r[0]}.png")
    _csv(root / "FETAL_PLANES_DB_data.csv", "\n".join(lines))
    return root


def test_read_fetal_planes(tmp_path: Path) -> None:
    df = read_fetal_planes(_fetal_db(tmp_path / "fp"))
    assert df["label"].tolist() == ["Fetal brain", "Fetal brain", "Fetal femur", "Maternal cervix"]
    assert df["group"].tolist() == ["1", "1", "2", "3"]
    assert df["split"].tolist() == ["train", "train", "test", "train"]
    assert (
        df["brain_plane"][0] == "Trans-thalamic"
        and df["machine"][2] == "Aloka"
        and df["operator"][3] == "Other"
    )
    assert df["path"][0].endswith("Images/Patient00001_Plane1_1_of_2.png") and Path(df["path"][0]).is_file()
    assert detect_format(tmp_path / "fp") == "fetal_planes" and len(load_index(tmp_path / "fp")) == 4


def test_read_fetal_planes_missing_images_and_csv(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match="2 of 4 images listed are missing: .*Patient00001_Plane1_1_of_2.png"
    ):
        read_fetal_planes(_fetal_db(tmp_path / "fp", n_missing=2))
    with pytest.raises(InputError, match="FETAL_PLANES_DB_data.csv not found"):
        read_fetal_planes(tmp_path)


# ---------------------------------------------------------------- boxes


def test_read_boxes_good_and_bad(table_dir: Path) -> None:
    good = _csv(
        table_dir / "boxes.csv",
        "path,x1,y1,x2,y2,label\nimg/a.png,1,2,10,11,valve\nimg/a.png,3,3,5,6,calcium\nimg/b.png,0,0,4.5,4,valve\n",
    )
    df = read_boxes(good)
    assert df[["x1", "y1", "x2", "y2"]].dtypes.map(lambda d: d.kind).tolist() == ["f"] * 4
    assert df["x2"].sum() == pytest.approx(19.5) and df["path"].nunique() == 2
    assert detect_format(good) == "boxes" and len(load_index(good)) == 3

    swapped = _csv(
        table_dir / "b1.csv", "path,x1,y1,x2,y2,label\nimg/a.png,1,2,10,11,v\nimg/a.png,9,2,3,11,v\n"
    )
    with pytest.raises(InputError, match=r"1 box with x1 >= x2.*CSV lines 3"):
        read_boxes(swapped)
    nan = _csv(table_dir / "b2.csv", "path,x1,y1,x2,y2,label\nimg/a.png,1,,10,11,v\n")
    with pytest.raises(InputError, match="'y1' is not a finite number"):
        read_boxes(nan)
    with pytest.raises(InputError, match="'y2'"):
        read_boxes(_csv(table_dir / "b3.csv", "path,x1,y1,x2,label\nimg/a.png,1,2,10,v\n"))


# ---------------------------------------------------------------- HC18


def test_read_hc18_real_subset(hc18_dir: Path) -> None:
    df = read_hc18(hc18_dir)
    images = sorted(p.name for p in (hc18_dir / "images").glob("*.png") if "Annotation" not in p.name)
    annotations = sorted((hc18_dir / "images").glob("*_Annotation.png"))
    assert len(df) == len(images) == len(annotations) == 373  # one annotation per image
    assert df["group"].nunique() == 300  # subjects 000-299; several images per subject
    assert (df["group"] == "014").sum() == 3  # 014_HC, 014_2HC, 014_3HC
    assert all(
        Path(a).name == Path(p).stem + "_Annotation.png"
        for p, a in zip(df["path"], df["annotation"], strict=True)
    )
    assert df["pixel_mm"].between(0.04, 0.3).all()
    assert df["hc_mm"].between(40, 360).all() and df.loc[0, "hc_mm"] == pytest.approx(44.3)
    assert detect_format(hc18_dir) == "hc18"


def test_read_hc18_missing_annotation(tmp_path: Path) -> None:
    _csv(
        tmp_path / "pixel_size_and_HC.csv",
        "filename,pixel size(mm),head circumference (mm)\n001_HC.png,0.1,55\n",
    )
    _png(tmp_path / "images" / "001_HC.png")
    with pytest.raises(InputError, match="1 of 1 annotations listed are missing: .*001_HC_Annotation.png"):
        read_hc18(tmp_path)
    _png(tmp_path / "images" / "001_HC_Annotation.png")
    assert read_hc18(tmp_path)["group"].tolist() == ["001"]


# ---------------------------------------------------------------- load_index


def test_load_index_detects_layouts_and_explains_failures(tmp_path: Path, table_dir: Path) -> None:
    _png(tmp_path / "cls" / "x" / "1.png")
    assert detect_format(tmp_path / "cls") == "image_folder"
    assert load_index(tmp_path / "cls", classes=["x"])["label"].tolist() == ["x"]
    csv = _csv(table_dir / "t.csv", "file,label\nimg/a.png,x\n")
    assert load_index(csv, path_col="file")["path"][0].endswith("a.png")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="no dataset recognised .*expected a CSV table"):
        load_index(tmp_path / "nothing")
    with pytest.raises(InputError, match="EchoNet-Dynamic"):
        _csv(tmp_path / "nothing" / "FileList.csv", "FileName,EF\na,50\n")
        load_index(tmp_path / "nothing")
