"""Leakage guards of a training run: refuse masks among the inputs, warn about per-file groups and about
near-duplicates across splits, and say in the run what was found (model card, metrics JSON).

The checks themselves live in `sonokit.data.leakage`; this module decides what is an error, what is a warning,
and how a user overrides it (`--set options.allow_mask_like=true`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonokit.data.leakage import (
    MAX_DISTANCE,
    Thumbnails,
    describe_thumbnails,
    mask_like_name,
    near_duplicates,
    per_file_groups,
    resample_unit,
)
from sonokit.errors import InputError
from sonokit.tasks import Task
from sonokit.utils import get_logger

log = get_logger(__name__)

_warned_per_file: set[str] = (
    set()
)  # data sources already warned about in this process (k-fold: once, not k times)


def shown(path: str, data: str | Path | None) -> str:
    """A path as the user gave it: relative to the dataset's folder when it lies inside it."""
    if data is None:
        return Path(path).name
    root = Path(data)
    root = root.parent if root.suffix.lower() == ".csv" else root
    try:
        return os.path.relpath(path, root.resolve()) if Path(path).is_relative_to(root.resolve()) else path
    except ValueError:
        return path


def thumbnails(task: Task, paths: list[str]) -> Thumbnails | None:
    """pHash and two-level flag per file from the task's own preprocessed thumbnails (None: the task has none)."""
    read = task.thumbnail_reader()
    return describe_thumbnails(paths, read) if read is not None else None


def check_mask_like(task: Task, paths: list[str], thumbs: Thumbnails | None) -> int:
    """Refuse inputs that look like segmentation masks (by name, or only two grey levels) unless allowed.

    Returns how many there are (0, or the count kept with options.allow_mask_like=true).
    """
    by_name = {p for p in paths if mask_like_name(p)}
    by_pixels = set() if thumbs is None else {p for p, f in zip(paths, thumbs.two_level, strict=True) if f}
    found = sorted(by_name | by_pixels)
    if not found:
        return 0
    examples = ", ".join(shown(p, task.cfg.data) for p in found[:3])
    message = (
        f"{len(found)} of {len(paths)} input files look like segmentation masks "
        f"({len(by_name)} by name, {len(by_pixels)} with only two grey levels), e.g. {examples}"
    )
    if getattr(task.opts, "allow_mask_like", False):
        log.warning("%s; kept because options.allow_mask_like is set", message)
        return len(found)
    raise InputError(
        f"{message}: masks are targets, not inputs; move them out of the dataset, "
        "or pass --set options.allow_mask_like=true if these really are images",
        task.cfg.data,
    )


def warn_per_file_groups(task: Task, index: pd.DataFrame, unit: str) -> None:
    """Once per data source: without a patient column splits and CIs are per file, not per patient."""
    key = str(task.cfg.data)
    if key in _warned_per_file:
        return
    _warned_per_file.add(key)
    log.warning(
        "no group (patient) column: each of the %d %s is its own group, so splits and bootstrap CIs are per %s; "
        "if a patient has several, give a patient column (--group-col) to keep them together",
        index["path"].nunique(),
        unit,
        unit.rstrip("s"),
    )


def screen_index(task: Task, index: pd.DataFrame) -> tuple[list[str], Thumbnails | None, int]:
    """Before any split or output: (unique paths, their thumbnails, mask-like count); refuses masks."""
    paths = list(pd.unique(index["path"].astype(str)))
    thumbs = thumbnails(task, paths)
    return paths, thumbs, check_mask_like(task, paths, thumbs)


def guard_run(task: Task, index: pd.DataFrame) -> dict[str, Any]:
    """All checks on a split index; the dict goes into the model card (training_data.leakage)."""
    paths, thumbs, n_mask = screen_index(task, index)
    unit = resample_unit(index)
    per_file = per_file_groups(index)
    if per_file:
        warn_per_file_groups(task, index, unit)
    report: dict[str, Any] = {
        "group_unit": unit,
        "per_file_groups": per_file,
        "mask_like_inputs": n_mask,
        "near_duplicates": None,
    }
    if thumbs is None:
        return report
    report["near_duplicates"] = near_duplicates_across_splits(task, index, paths, thumbs)
    return report


def near_duplicates_across_splits(
    task: Task, index: pd.DataFrame, paths: list[str], thumbs: Thumbnails
) -> dict[str, Any]:
    """Val and test files with a near-duplicate (pHash) in train: counted, one example pair warned about."""
    position = {p: i for i, p in enumerate(paths)}
    first = index.drop_duplicates("path")
    split_of = pd.Series(first["split"].astype(str).to_numpy(), index=first["path"].astype(str).to_numpy())
    train = np.array([position[p] for p in split_of.index[split_of == "train"]], dtype=np.int64)
    out: dict[str, Any] = {"hash": "pHash 64 bit", "max_distance": MAX_DISTANCE}
    for split in ("val", "test"):
        rows = np.array([position[p] for p in split_of.index[split_of == split]], dtype=np.int64)
        if len(rows) == 0:
            continue
        found = near_duplicates(thumbs.hashes[rows], thumbs.hashes[train], MAX_DISTANCE)
        out[split] = found.count
        if found.count and found.example is not None:
            q, r = paths[rows[found.example[0]]], paths[train[found.example[1]]]
            log.warning(
                "near-duplicates of train files: %d of %d %s files (perceptual hash within %d of 64 bits), "
                "e.g. %s (%s) ~ %s (train): they inflate the %s score; give a patient column (--group-col) "
                "or remove the copies",
                found.count,
                len(rows),
                split,
                MAX_DISTANCE,
                shown(q, task.cfg.data),
                split,
                shown(r, task.cfg.data),
                split,
            )
    return out
