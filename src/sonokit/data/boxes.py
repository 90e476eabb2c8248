"""Box tables: `path, x1, y1, x2, y2, label` in pixels, one row per box (several rows per image).

Boxes are validated when read (finite, x1 < x2, y1 < y2, non-negative) because a swapped corner silently trains a
detector on garbage and is found only weeks later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.data.tables import read_table
from sonokit.data.validate import csv_line, listing, require_columns, require_finite
from sonokit.errors import InputError

BOX_COLUMNS = ("x1", "y1", "x2", "y2")


def read_boxes(
    csv_path: str | Path,
    *,
    path_col: str = "path",
    label_col: str = "label",
    group_col: str = "group",
    split_col: str = "split",
    classes: list[str] | None = None,
    check_files: bool = True,
) -> pd.DataFrame:
    """Read a box table into the normalised index plus float columns x1, y1, x2, y2."""
    df = read_table(
        csv_path,
        path_col=path_col,
        label_col=label_col,
        group_col=group_col,
        split_col=split_col,
        classes=classes,
        check_files=check_files,
        one_label_per_file=False,  # one row per box: an image may hold boxes of several labels
    )
    require_columns(df.columns, BOX_COLUMNS, csv_path)
    require_finite(df, BOX_COLUMNS, csv_path)
    for col in BOX_COLUMNS:
        df[col] = pd.to_numeric(df[col]).astype(float)
    bad = (df["x1"] >= df["x2"]) | (df["y1"] >= df["y2"]) | (df[list(BOX_COLUMNS)] < 0).any(axis=1)
    if bad.any():
        lines = [str(csv_line(i)) for i in np.flatnonzero(bad.to_numpy())]
        raise InputError(
            f"{len(lines)} box{'es' if len(lines) > 1 else ''} with x1 >= x2, y1 >= y2 or a negative coordinate "
            f"(CSV lines {listing(lines)})",
            csv_path,
        )
    return df


def boxes_by_image(df: pd.DataFrame) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Group box rows per image: path -> ((n, 4) float32 xyxy array, labels), in first-seen image order."""
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    for path, rows in df.groupby("path", sort=False):
        out[str(path)] = (rows[list(BOX_COLUMNS)].to_numpy(np.float32), rows["label"].astype(str).tolist())
    return out
