"""Stratified group k-fold cross-validation: one run per fold (RUN/fold_<i>) and metrics_cv.json.

Each fold holds out one part of the patients as its test split; its validation split (early stopping) is carved
from the remaining patients, so the held-out fold never influences training. A patient is never in two parts.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonokit.core.config import TrainConfig
from sonokit.errors import InputError
from sonokit.evaluate.metrics import scalar_metrics
from sonokit.tasks import get_task
from sonokit.utils import atomic_write_json, atomic_write_text, get_logger

log = get_logger(__name__)


def fold_indices(
    index: pd.DataFrame, k: int, seed: int, fold_col: str | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) per fold: drawn by stratified group k-fold, or read from `fold_col`."""
    from sonokit.data import stratified_group_kfold

    groups = index["group"] if "group" in index.columns else index["path"]
    if fold_col:
        return given_folds(index, fold_col, k, groups)
    return stratified_group_kfold(index["label"] if "label" in index.columns else None, groups, k, seed)


def given_folds(
    index: pd.DataFrame, fold_col: str, k: int, groups: pd.Series
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The table's own folds (sorted by value), so results compare with others who used the same published
    folds. A fold column that splits a patient across folds is refused: it would leak that patient."""
    if fold_col not in index.columns:
        raise InputError(f"fold column {fold_col!r} is not in the table (columns: {list(index.columns)})")
    values = index[fold_col]
    if values.isna().any() or (values.astype(str).str.strip() == "").any():
        raise InputError(f"fold column {fold_col!r} has empty cells: every row needs a fold")
    keys = values.astype(str).str.strip()
    unique = sorted(keys.unique())
    numbers = pd.to_numeric(pd.Series(unique), errors="coerce")
    names = [u for _, u in sorted(zip(numbers, unique, strict=True))] if numbers.notna().all() else unique
    if len(names) < 2:
        raise InputError(f"fold column {fold_col!r} holds {len(names)} fold: k-fold needs at least 2")
    if k and len(names) != k:
        raise InputError(f"fold column {fold_col!r} holds {len(names)} folds ({names[:10]}), but folds = {k}")
    split_groups = keys.groupby(groups.astype(str).to_numpy()).nunique()
    if (split_groups > 1).any():
        raise InputError(
            f"fold column {fold_col!r} puts {int((split_groups > 1).sum())} patient(s) (group) in more than one "
            "fold: the held-out folds would leak them"
        )
    rows = np.arange(len(index))
    return [(rows[(keys != name).to_numpy()], rows[(keys == name).to_numpy()]) for name in names]


def fold_index(index: pd.DataFrame, test_idx: np.ndarray, cfg: TrainConfig) -> pd.DataFrame:
    """The index of one fold: test = the held-out rows, train/val split by patient from the rest."""
    from sonokit.data import assign_splits

    df = index.copy().reset_index(drop=True)
    df["split"] = ""
    df.loc[test_idx, "split"] = "test"
    return assign_splits(df, (1.0 - cfg.val_fraction, cfg.val_fraction, 0.0), seed=cfg.seed)


def summarise(per_fold: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample std over folds of every scalar metric (undefined values are skipped)."""
    names: list[str] = []
    for m in per_fold:
        names += [n for n in scalar_metrics(m) if n not in names and n != "loss"]
    out = {}
    for name in names:
        values = [m.get(name) for m in per_fold]
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        out[name] = {
            "mean": float(np.mean(finite)) if finite else None,
            "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
            "values": values,
        }
    return out


def cross_validate(cfg: TrainConfig, callbacks: Sequence[Any] = ()) -> Path:
    """Train cfg.folds runs (or one per value of cfg.fold_col) into <out>/fold_<i>; write <out>/metrics_cv.json."""
    from sonokit.evaluate.report import write_report
    from sonokit.train.engine import default_run_dir, fit

    k = cfg.folds
    root = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    task = get_task(cfg.task)(cfg)
    index = task.read_index()
    task.setup_classes(index)
    from sonokit.train.leakage import screen_index

    screen_index(task, index)  # masks among the inputs are refused before the first fold writes anything
    if "split" in index.columns and (index["split"] != "").any():
        log.info("k-fold re-splits the whole dataset by patient; the table's own split column is not used")
    folds = fold_indices(index, k, cfg.seed, cfg.fold_col)
    k = len(folds)  # with fold_col and no --folds: as many as the column holds
    if cfg.fold_col:
        log.info("k-fold uses the table's folds in column %r", cfg.fold_col)
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / "config.yaml", cfg.to_yaml())
    per_fold = []
    for i, (_, test_idx) in enumerate(folds):
        run_dir = root / f"fold_{i}"
        resume = cfg.resume and (run_dir / "checkpoint_last.pt").is_file()
        fold_cfg = cfg.model_copy(
            update={"folds": 0, "fold_col": None, "out": str(run_dir), "resume": resume}
        )
        fold_task = get_task(cfg.task)(fold_cfg)
        fold_task.classes = task.classes
        log.info("fold %d/%d: %d held-out rows", i + 1, k, len(test_idx))
        fit(fold_task, fold_index(index, test_idx, cfg), run_dir, callbacks)
        if is_main:
            per_fold.append(json.loads((run_dir / "metrics_test.json").read_text(encoding="utf-8")))
    if not is_main:
        return root
    summary = {
        "folds": k,
        "held_out": "test split of each fold (patients never shared between folds)",
        "fold_col": cfg.fold_col,
        "metrics": summarise(per_fold),
        "runs": [f"fold_{i}" for i in range(k)],
    }
    atomic_write_json(root / "metrics_cv.json", summary)
    write_report(root)
    for name in ("accuracy", "macro_f1", "mae"):
        if name in summary["metrics"] and summary["metrics"][name]["mean"] is not None:
            m = summary["metrics"][name]
            log.info("cross-validation %s: %.4f +- %.4f", name, m["mean"], m["std"] or 0.0)
    if not per_fold:
        raise InputError("no folds were trained")
    return root
