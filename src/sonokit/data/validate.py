"""Checks shared by every reader, so a bad table fails the same way whatever its format.

Each check raises one InputError naming the table and the problem, listing at most `LIST_LIMIT` offenders but
counting them all: a user with 10 000 rows needs to know whether 3 or 3 000 are wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.errors import InputError
from sonokit.utils import get_logger
from sonokit.utils.paths import printable

log = get_logger(__name__)

LIST_LIMIT = 10


def listing(items: Sequence[str], limit: int = LIST_LIMIT) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def csv_line(index: int) -> int:
    """The line number a user sees in an editor for DataFrame row `index` (header is line 1)."""
    return int(index) + 2


def require_columns(columns: Iterable[str], needed: Iterable[str], source: str | Path) -> None:
    """Raise naming the first missing column and the columns that do exist."""
    have = list(columns)
    missing = [c for c in needed if c not in have]
    if missing:
        raise InputError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)} "
            f"(columns present: {', '.join(repr(c) for c in have) or 'none'})",
            source,
        )


def require_no_missing(df: pd.DataFrame, columns: Iterable[str], source: str | Path) -> None:
    """Empty or NaN cells in required columns are an error, reported with CSV line numbers."""
    for col in columns:
        values = df[col]
        bad = values.isna()
        if not pd.api.types.is_numeric_dtype(values):
            bad |= values.astype(str).str.strip().isin(["", "nan", "NaN", "None"])
        if bad.any():
            lines = [str(csv_line(i)) for i in np.flatnonzero(bad.to_numpy())]
            raise InputError(
                f"{len(lines)} row{'s' if len(lines) > 1 else ''} with an empty or NaN {col!r} "
                f"(CSV lines {listing(lines)})",
                source,
            )


def require_files(paths: Iterable[str], source: str | Path, what: str = "files") -> None:
    """Every listed file must exist; the error names the first LIST_LIMIT missing ones and counts all."""
    unique = list(dict.fromkeys(str(p) for p in paths))
    missing = [p for p in unique if not os.path.isfile(p)]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(unique)} {what} listed are missing: {listing(missing)}",
            source,
        )


def require_known_labels(labels: Iterable[str], classes: Sequence[str], source: str | Path) -> None:
    """Labels must be among the declared classes; the error lists the unknown labels and how many rows."""
    labels = pd.Series(list(labels), dtype=object).astype(str)
    known = {str(c) for c in classes}
    bad = labels[~labels.isin(known)]
    if len(bad):
        unknown = sorted(bad.unique())
        raise InputError(
            f"{len(bad)} row{'s' if len(bad) > 1 else ''} with labels outside the declared classes "
            f"{list(classes)}: {listing([repr(u) for u in unknown])}",
            source,
        )


def require_finite(df: pd.DataFrame, columns: Iterable[str], source: str | Path) -> None:
    """Numeric columns must parse as finite numbers (coordinates, volumes, pixel sizes)."""
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            lines = [str(csv_line(i)) for i in np.flatnonzero(bad)]
            raise InputError(
                f"{len(lines)} row{'s' if len(lines) > 1 else ''} where {col!r} is not a finite number "
                f"(CSV lines {listing(lines)})",
                source,
            )


def drop_duplicate_rows(
    df: pd.DataFrame, source: str | Path, *, labels: bool = True, conflicting_rows: str = "refuse"
) -> pd.DataFrame:
    """Drop exact duplicate rows with one warning; refuse one file listed under two groups, splits or labels.

    A duplicated row trains (and counts in the metrics) twice. One image under two groups (patients) or two
    splits lands on both sides of a split, which inflates every score; under two labels it teaches both.
    Label conflicts are per (path, frame) when the table names frames; `labels=False` skips them (a box table
    lists one row per box). `conflicting_rows="keep"` keeps such rows with a warning instead of an error.
    """
    dup = df.duplicated(keep="first")
    if dup.any():
        lines = [str(csv_line(i)) for i in np.flatnonzero(dup.to_numpy())]
        log.warning(
            "%s: %d duplicated row%s dropped (CSV lines %s)",
            printable(source),
            len(lines),
            "s" if len(lines) > 1 else "",
            listing(lines),
        )
        df = df[~dup]
    keyed = [("group", ["path"]), ("split", ["path"])]
    if labels:
        keyed.append(("label", ["path", "frame"] if "frame" in df.columns else ["path"]))
    for col, key in keyed:
        if col not in df.columns:
            continue
        counts = df.groupby(key, sort=False, dropna=False)[col].nunique(dropna=False)
        bad = counts[counts > 1]
        if not len(bad):
            continue
        paths = list(dict.fromkeys(printable(k[0] if isinstance(k, tuple) else k) for k in bad.index))
        why = "one image taught two answers" if col == "label" else "one image on both sides of a split"
        message = (
            f"{len(paths)} file{'s' if len(paths) > 1 else ''} listed under more than one {col} ({why}): "
            f"{listing(paths)}"
        )
        if conflicting_rows != "keep":
            raise InputError(f"{message}; give each file one {col}, or set conflicting_rows=keep", source)
        log.warning("%s: %s (kept: conflicting_rows=keep)", printable(source), message)
    return df
