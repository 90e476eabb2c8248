"""Result tables as CSV and Markdown: one metrics dict per row, values with their 95% CIs in the Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sonokit.utils import atomic_write_text, write_csv

#: the columns of a calcification row (heuristic, classifier or cascade) in the paper's tables, in order
CALCIFICATION_COLUMNS = (
    "method",
    "boxes",
    "threshold",
    "min_pixels",
    "f1",
    "precision",
    "recall",
    "specificity",
    "accuracy",
    "macro_f1",
    "auroc",
    "n",
)
INT_COLUMNS = frozenset(
    {"threshold", "min_pixels", "n", "n_frames", "epochs", "tp", "fp", "fn", "tn", "seconds"}
)


def _fmt(value: Any, ci: Any = None, integer: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if integer and isinstance(value, (int, float)):
        return str(int(value))
    if isinstance(value, float):
        text = f"{value:.3f}"
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and ci[0] is not None:
            text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
        return text
    return str(value)


def markdown(df: pd.DataFrame, columns: Sequence[str], with_ci: Sequence[str] = ()) -> str:
    """A GitHub Markdown table of `columns`; those in `with_ci` show `<col>_ci95` beside the value."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in df.iterrows():
        cells = []
        for c in columns:
            v = row.get(c)
            ci = row.get(f"{c}_ci95") if c in with_ci else None
            cells.append(_fmt(v.item() if hasattr(v, "item") else v, ci, c in INT_COLUMNS))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    df: pd.DataFrame,
    csv_path: str | Path,
    columns: Sequence[str],
    with_ci: Sequence[str] = (),
    title: str = "",
) -> tuple[Path, Path]:
    """Write the full table as CSV (CIs as lo/hi columns) and the chosen columns as Markdown beside it."""
    csv_path = Path(csv_path)
    flat = df.copy()
    for c in [c for c in flat.columns if str(c).endswith("_ci95")]:
        lo_hi = flat[c].apply(lambda v: v if isinstance(v, (list, tuple)) and len(v) == 2 else (None, None))
        flat[f"{c[:-5]}_lo"] = [v[0] for v in lo_hi]
        flat[f"{c[:-5]}_hi"] = [v[1] for v in lo_hi]
        flat = flat.drop(columns=c)
    write_csv(flat, csv_path)
    md_path = csv_path.with_suffix(".md")
    head = f"## {title}\n\n" if title else ""
    atomic_write_text(md_path, head + markdown(df, [c for c in columns if c in df.columns], with_ci))
    return csv_path, md_path
