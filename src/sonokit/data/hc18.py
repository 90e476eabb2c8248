"""HC18 fetal head circumference (van den Heuvel et al. 2018): images, ellipse annotations, pixel size and HC.

Layouts accepted: the subset in ../shared/data/hc18 (`pixel_size_and_HC.csv` + `images/`) and the challenge's
own (`training_set_pixel_size_and_HC.csv` + `training_set/`, `test_set_pixel_size.csv` + `test_set/`, no HC).
Image names are `NNN_HC.png`, `NNN_2HC.png`, ...: NNN is the subject, so several images share one group.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.data.tables import read_csv_text
from sonokit.data.validate import require_files, require_finite, require_no_missing
from sonokit.errors import InputError

_SUBJECT = re.compile(r"^(\d+)_")


def _find_csv(root: Path) -> Path:
    if root.is_file():
        return root
    candidates = sorted(root.glob("*pixel_size*.csv"))
    training = [c for c in candidates if "hc" in c.stem.lower()]
    if training or candidates:
        return (training or candidates)[0]
    raise InputError(
        "no '*pixel_size*.csv' found (expected an HC18 folder: pixel_size_and_HC.csv + images/)", root
    )


def _image_dir(csv_path: Path, first_name: str) -> Path:
    root = csv_path.parent
    prefix = csv_path.stem.split("_pixel")[0]  # training_set_pixel_size_and_HC -> training_set
    for folder in (root / "images", root / prefix, root / "training_set", root / "test_set", root):
        if (folder / first_name).is_file():
            return folder
    return root / "images"


def _column(raw: pd.DataFrame, *keywords: str) -> str | None:
    for col in raw.columns:
        low = col.lower()
        if all(k in low for k in keywords):
            return col
    return None


def read_hc18(root: str | Path, check_files: bool = True) -> pd.DataFrame:
    """Index HC18: path, annotation (the *_Annotation.png; "" when the set has none), group (subject number),
    pixel_mm, hc_mm (NaN for the unlabelled test set), split ("")."""
    root = Path(root)
    if not root.exists():
        raise InputError("HC18 folder not found", root)
    csv_path = _find_csv(root)
    raw = read_csv_text(csv_path)
    if raw.empty:
        raise InputError("table has no rows", csv_path)
    name_col = _column(raw, "filename") or _column(raw, "file")
    pixel_col = _column(raw, "pixel")
    hc_col = _column(raw, "circumference") or _column(raw, "hc")
    if name_col is None or pixel_col is None:
        raise InputError(
            f"expected columns 'filename' and 'pixel size(mm)' (columns present: {list(raw.columns)})",
            csv_path,
        )
    require_no_missing(raw, [name_col], csv_path)
    require_finite(raw, [pixel_col] + ([hc_col] if hc_col else []), csv_path)

    names = raw[name_col].str.strip()
    folder = _image_dir(csv_path, names.iloc[0])
    paths = [str((folder / n).resolve()) for n in names]
    annotations = [str((folder / f"{Path(n).stem}_Annotation.png").resolve()) for n in names]
    groups = [m.group(1) if (m := _SUBJECT.match(n)) else Path(n).stem for n in names]
    df = pd.DataFrame(
        {
            "path": paths,
            "annotation": annotations if hc_col else [""] * len(names),
            "group": groups,
            "pixel_mm": pd.to_numeric(raw[pixel_col]).astype(float).to_numpy(),
            "hc_mm": pd.to_numeric(raw[hc_col]).astype(float).to_numpy() if hc_col else np.nan,
            "split": "",
        }
    )
    if check_files:
        require_files(df["path"], csv_path, what="images")
        if hc_col:
            require_files(df["annotation"], csv_path, what="annotations")
    return df
