"""Metrics per level of a column (site, vendor, EF range): the subgroup table of an external-validation paper.

`--by COLUMN` groups by the column's values; `--by COLUMN:30,40,50` bins a numeric column at those edges
(left-closed: <30, 30-40, 40-50, >=50) and `--by COLUMN:q4` at its quartiles (any qK) over the rows evaluated.
Levels are fixed per file (one value per path) before inference, so a bad column fails before any output; each
level's metrics are the task's own `metrics` on that level's prediction rows, with the same bootstrap CIs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonokit.errors import InputError

MISSING = "(missing)"
MAX_LEVELS = 50  # more distinct values than this without bins is a continuous column: ask for bins
COUNTS = ("n", "n_videos", "n_groups")


@dataclass(frozen=True)
class BySpec:
    """One `--by` request: a column, and optionally bin edges or a number of quantile bins."""

    column: str
    edges: tuple[float, ...] = ()
    quantiles: int = 0

    @property
    def key(self) -> str:
        """Column of the predictions CSV holding the level, and the stem of the table files."""
        return f"by_{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.column)}"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def parse_by(values: Sequence[str] | None) -> list[BySpec]:
    """`site`, `site,vendor`, `ef:30,40,50`, `ef:q4`; in a comma list a bare number continues the previous edges."""
    tokens: list[str] = []
    for value in values or []:
        tokens += [t.strip() for t in str(value).split(",") if t.strip()]
    specs: list[tuple[str, list[float], int]] = []
    for token in tokens:
        number = _number(token)
        if number is not None and specs and specs[-1][1]:
            specs[-1][1].append(number)
            continue
        column, _, bins = token.partition(":")
        column, bins = column.strip(), bins.strip()
        if not column:
            raise InputError(f"--by {token!r}: no column name before ':'")
        if not bins:
            specs.append((column, [], 0))
        elif re.fullmatch(r"[qQ]\d+", bins):
            k = int(bins[1:])
            if k < 2:
                raise InputError(f"--by {token!r}: quantile bins need q2 or more")
            specs.append((column, [], k))
        elif _number(bins) is not None:
            specs.append((column, [float(bins)], 0))
        else:
            raise InputError(f"--by {token!r}: expected COLUMN, COLUMN:EDGE,EDGE,... or COLUMN:qK")
    out = []
    for column, edges, k in specs:
        if edges and list(edges) != sorted(set(edges)):
            raise InputError(f"--by {column}: bin edges must increase, got {edges}")
        out.append(BySpec(column, tuple(edges), k))
    if len({s.column for s in out}) != len(out):
        raise InputError("--by names a column twice")
    return out


def _find_column(columns: Sequence[str], spec: BySpec, aliases: dict[str, str], source: str | Path) -> str:
    """The index column for `spec.column`: as named, a renamed table column (label/group), or a unique
    case-insensitive match (EF -> ef); otherwise a one-line error naming the file and the columns there."""
    name = spec.column
    if name in columns:
        return name
    if aliases.get(name) in columns:
        return aliases[name]
    folded = [c for c in columns if str(c).lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    shown = ", ".join(str(c) for c in columns if not str(c).startswith("_"))
    raise InputError(f"--by: no column {name!r} in the data (columns: {shown})", source)


def _fmt_edge(x: float) -> str:
    return f"{x:g}"


def _bin_labels(edges: Sequence[float]) -> list[str]:
    inner = [f"{_fmt_edge(a)}-{_fmt_edge(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [f"<{_fmt_edge(edges[0])}", *inner, f">={_fmt_edge(edges[-1])}"]


def _binned(values: pd.Series, spec: BySpec, source: str | Path) -> tuple[pd.Series, list[str]]:
    numeric = pd.to_numeric(values.replace("", np.nan), errors="coerce")
    bad = numeric.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        examples = ", ".join(sorted({str(v) for v in values[bad]})[:3])
        raise InputError(f"--by {spec.column}: bins need a numeric column, found {examples}", source)
    edges = list(spec.edges)
    if spec.quantiles:
        finite = numeric.dropna()
        if finite.empty:
            raise InputError(f"--by {spec.column}: no numeric values to bin", source)
        qs = np.quantile(finite.to_numpy(float), np.arange(1, spec.quantiles) / spec.quantiles)
        edges = sorted({float(np.round(q, 6)) for q in qs})
    labels = _bin_labels(edges)
    codes = np.searchsorted(np.asarray(edges, dtype=float), numeric.to_numpy(float), side="right")
    level = pd.Series([labels[c] for c in codes], index=values.index, dtype=object)
    level[numeric.isna()] = MISSING
    return level, labels


def _natural_order(levels: Sequence[str]) -> list[str]:
    numbers = [_number(v) for v in levels]
    if all(n is not None for n in numbers):
        return [v for _, v in sorted(zip(numbers, levels, strict=True))]
    return sorted(levels)


def by_levels(
    rows: pd.DataFrame, specs: Sequence[BySpec], source: str | Path, aliases: dict[str, str] | None = None
) -> pd.DataFrame:
    """Path + one level column per spec for index rows `rows`; attrs["order"] holds each spec's level order.

    Fails before any inference: a missing column, bins on text, a continuous column without bins, or a file
    listed with two different values.
    """
    out = pd.DataFrame({"path": rows["path"].astype(str).to_numpy()})
    order: dict[str, list[str]] = {}
    for spec in specs:
        column = _find_column(list(rows.columns), spec, aliases or {}, source)
        values = rows[column].reset_index(drop=True)
        if spec.edges or spec.quantiles:
            level, labels = _binned(values, spec, source)
        else:
            text = values.astype(str).str.strip()
            missing = values.isna() | text.isin(["", "nan", "None"])
            level = text.where(~missing, MISSING).astype(object)
            labels = _natural_order(sorted(set(level) - {MISSING}))
            if len(labels) > MAX_LEVELS:
                raise InputError(
                    f"--by {spec.column}: {len(labels)} distinct values; bin it, e.g. "
                    f"--by {spec.column}:q4 or --by {spec.column}:EDGE,EDGE",
                    source,
                )
        if (level == MISSING).any():
            labels = [*labels, MISSING]
        per_path = pd.DataFrame({"path": out["path"], "level": level.to_numpy()}).drop_duplicates()
        twice = per_path["path"].duplicated(keep=False)
        if twice.any():
            path = per_path.loc[twice, "path"].iloc[0]
            raise InputError(f"--by {spec.column}: the file {path} has more than one value", source)
        out[spec.key] = level.to_numpy()
        order[spec.key] = labels
    out = out.drop_duplicates("path").reset_index(drop=True)
    out.attrs["order"] = order
    return out


def attach_levels(preds: pd.DataFrame, levels: pd.DataFrame) -> pd.DataFrame:
    """The level columns of `levels` onto prediction rows, matched by path (video rows share their file's level)."""
    lookup = levels.set_index("path")
    out = preds.copy()
    for key in lookup.columns:
        out[key] = out["path"].astype(str).map(lookup[key]).fillna(MISSING).to_numpy()
    return out


def _headline(task: Any, metrics: dict[str, Any]) -> list[str]:
    """The task's headline metrics that have a CI (a table row shows value and interval)."""
    return [k for k in task.headline_of(metrics) if f"{k}_ci95" in metrics]


def breakdown_table(
    task: Any, preds: pd.DataFrame, key: str, order: Sequence[str], n_boot: int, seed: int, overall: dict
) -> pd.DataFrame:
    """One row per level (and "all" first, from `overall`): counts, each headline metric and its 95% CI.

    A bin with no rows stays in the table with n = 0, so a reader sees which ranges the data did not cover.
    """
    keys = _headline(task, overall)
    rows = []

    def row(level: str, m: dict[str, Any]) -> dict[str, Any]:
        r: dict[str, Any] = {"level": level}
        r.update({c: m.get(c) for c in COUNTS if c in overall})
        for k in keys:
            ci = m.get(f"{k}_ci95") or [None, None]
            r[k], r[f"{k}_ci_low"], r[f"{k}_ci_high"] = m.get(k), ci[0], ci[1]
        return r

    rows.append(row("all", overall))
    for level in order:
        sub = preds[preds[key] == level]
        if sub.empty:
            rows.append(row(level, dict.fromkeys(COUNTS, 0)))
            continue
        rows.append(row(level, task.metrics(sub.reset_index(drop=True), n_boot, seed)))
    return pd.DataFrame(rows)


def table_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as JSON-ready rows (NaN -> None)."""
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def _cell(value: Any, low: Any = None, high: Any = None, ci: bool = False) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not ci:
        return str(int(value))
    text = f"{float(value):.3f}"
    if ci:
        ok = low is not None and high is not None and np.isfinite(low) and np.isfinite(high)
        text += f" [{float(low):.3f}, {float(high):.3f}]" if ok else " [n/a]"
    return text


def _display(table: pd.DataFrame, column: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells: counts as integers, each metric as `value [low, high]`."""
    metrics = [c for c in table.columns if f"{c}_ci_low" in table.columns]
    counts = [c for c in COUNTS if c in table.columns]
    head = [column, *counts, *(f"{m} (95% CI)" for m in metrics)]
    body = []
    for _, r in table.iterrows():
        cells = [str(r["level"])]
        cells += [_cell(None if pd.isna(r[c]) else int(r[c])) for c in counts]
        cells += [
            _cell(
                *(None if pd.isna(r[x]) else float(r[x]) for x in (m, f"{m}_ci_low", f"{m}_ci_high")), ci=True
            )
            for m in metrics
        ]
        body.append(cells)
    return head, body


def markdown_table(table: pd.DataFrame, column: str) -> str:
    head, body = _display(table, column)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def html_table(table: pd.DataFrame, column: str) -> str:
    head, body = _display(table, column)
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
    return f"<table><tr>{th}</tr>{rows}</table>"


def write_breakdown(table: pd.DataFrame, spec: BySpec, out_dir: Path, split: str) -> list[Path]:
    """by_<column>_<split>.csv (numbers) and .md (the paper table)."""
    from sonokit.utils import atomic_write_text, write_csv

    stem = f"{spec.key}_{split}"
    csv = write_csv(table.rename(columns={"level": spec.column}), out_dir / f"{stem}.csv")
    md = atomic_write_text(out_dir / f"{stem}.md", markdown_table(table, spec.column))
    return [csv, md]
