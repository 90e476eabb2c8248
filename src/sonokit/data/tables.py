"""The one index format every task consumes: a DataFrame with `path, label, group, split` (+ extra columns).

Every reader (CSV table, image folder, FETAL_PLANES_DB, boxes, HC18) normalises its source to these columns so
that splitting, frame sampling and datasets never care where an index came from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.data.validate import (
    drop_duplicate_rows,
    require_columns,
    require_files,
    require_known_labels,
    require_no_missing,
)
from sonokit.errors import InputError
from sonokit.io.formats import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

SPLITS = ("train", "val", "test")
IMAGE_EXTS = IMAGE_EXTENSIONS
VIDEO_EXTS = VIDEO_EXTENSIONS
DICOM_EXTS = DICOM_EXTENSIONS

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "tr": "train",
    "1": "train",
    "1.0": "train",
    "true": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "te": "test",
    "0": "test",
    "0.0": "test",
    "false": "test",
    "": "",
    "nan": "",
    "none": "",
}


def normalise_split(values: pd.Series, source: str | Path, column: str = "split") -> pd.Series:
    """Map TRAIN/Val/test/1/0/empty to "train"/"val"/"test"/"" (1 = train, 0 = test, as FETAL_PLANES_DB has it)."""
    text = values.fillna("").astype(str).str.strip().str.lower()
    mapped = text.map(_SPLIT_ALIASES)
    bad = mapped.isna()
    if bad.any():
        unknown = sorted(text[bad].unique())[:10]
        raise InputError(
            f"column {column!r} has {int(bad.sum())} values that are not a split "
            f"(expected train/val/test, TRAIN/VAL/TEST or 1/0): {unknown}",
            source,
        )
    return mapped.astype(str)


def resolve_paths(values: pd.Series, base: str | Path) -> pd.Series:
    """Absolute path strings; relative ones are taken relative to `base` (the CSV's folder), `~` is expanded."""
    base = os.fspath(base)
    return (
        values.astype(str)
        .str.strip()
        .map(lambda p: os.path.abspath(os.path.join(base, os.path.expanduser(p))))
    )


def path_stem(path: str) -> str:
    return Path(path).stem


def read_csv_text(csv_path: Path, **kw) -> pd.DataFrame:
    """Every cell as text (labels "01" and "1" stay distinct), stripped headers, latin-1 fallback."""
    if not csv_path.is_file():
        raise InputError("table not found" if not csv_path.exists() else "not a file", csv_path)
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, **kw)
    except UnicodeDecodeError:
        df = pd.read_csv(
            csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="latin-1", **kw
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"cannot parse CSV: {str(err).splitlines()[0]}", csv_path) from err
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _numeric_back(df: pd.DataFrame) -> pd.DataFrame:
    """Extra columns were read as text to keep labels exact; give numbers back their numeric dtype."""
    for col in df.columns:
        values = df[col].replace("", np.nan)
        if values.dropna().astype(str).str.match(r"^[+-]?0\d").any():
            continue  # identifiers such as "00123" keep their leading zeros
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().sum() == values.notna().sum():
            df[col] = numeric
    return df


def read_table(
    csv_path: str | Path,
    *,
    path_col: str = "path",
    label_col: str | None = "label",
    group_col: str = "group",
    split_col: str = "split",
    classes: list[str] | None = None,
    check_files: bool = True,
    one_label_per_file: bool = True,
    conflicting_rows: str = "refuse",
) -> pd.DataFrame:
    """Read a CSV of images or videos into the normalised index.

    `label_col=None` reads an unlabelled table (no `label` column). A `group` column is optional (each file is its
    own group when absent, which is only safe when every file is a different patient); the `split` column is
    optional ("" when absent). Explicitly named group/split columns that are absent are an error.
    Exact duplicate rows are dropped with a warning; a file under two groups, splits or (with
    `one_label_per_file`) labels is an error unless `conflicting_rows="keep"` (validate.drop_duplicate_rows).
    """
    csv_path = Path(csv_path)
    raw = read_csv_text(csv_path)
    if raw.empty:
        raise InputError("table has no rows", csv_path)
    filled = [path_col] + ([label_col] if label_col else [])  # these may not have empty cells
    named = [c for c, default in ((group_col, "group"), (split_col, "split")) if c != default]
    require_columns(raw.columns, filled + named, csv_path)
    require_no_missing(raw, filled, csv_path)

    out = pd.DataFrame(index=raw.index)
    out["path"] = resolve_paths(raw[path_col], csv_path.parent)
    if label_col:
        out["label"] = raw[label_col].astype(str).str.strip()
    if group_col in raw.columns:
        require_no_missing(raw, [group_col], csv_path)
        out["group"] = raw[group_col].astype(str).str.strip()
    else:
        out["group"] = out["path"].map(path_stem)
    if split_col in raw.columns:
        out["split"] = normalise_split(raw[split_col], csv_path, split_col)
    else:
        out["split"] = ""
    used = {path_col, label_col, group_col, split_col}
    extra = raw[[c for c in raw.columns if c not in used and c not in out.columns]]
    out = pd.concat([out, _numeric_back(extra.copy())], axis=1)

    out = drop_duplicate_rows(
        out, csv_path, labels=one_label_per_file and bool(label_col), conflicting_rows=conflicting_rows
    )
    if classes is not None and label_col:
        require_known_labels(out["label"], classes, csv_path)
    if check_files:
        require_files(out["path"], csv_path)
    return out.reset_index(drop=True)


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def class_names(df: pd.DataFrame | pd.Series, label_col: str = "label") -> list[str]:
    """Sorted unique labels; numeric labels sort as numbers so "10" comes after "9" (LUS scores, grades)."""
    labels = df[label_col] if isinstance(df, pd.DataFrame) else df
    unique = sorted({str(v) for v in labels.dropna() if str(v) != ""})
    numbers = [_as_number(u) for u in unique]
    if unique and all(n is not None for n in numbers):
        return [u for _, u in sorted(zip(numbers, unique, strict=True))]
    return unique
