"""Evaluate a model on one split: predictions CSV, metrics JSON with bootstrap CIs, plots; and `evaluate_run`.

Used by the engine at the end of training (val and test) and by `sonokit evaluate RUN --data PATH --split S`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn

from sonokit.errors import InputError
from sonokit.tasks import Task
from sonokit.utils import atomic_write_json, get_logger, write_csv

if TYPE_CHECKING:
    from sonokit.evaluate.breakdown import BySpec

log = get_logger(__name__)

SPLITS_FILE = "splits.csv"


def save_splits(index: pd.DataFrame, run_dir: str | Path) -> Path:
    """The split of every index row (path[, frame], split): evaluation reuses it exactly (k-fold runs too)."""
    cols = ["path", "frame", "split"] if "frame" in index.columns else ["path", "split"]
    return write_csv(index[cols], Path(run_dir) / SPLITS_FILE)


def apply_saved_splits(index: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Replace the split column by the one saved at training time (rows not in it get "")."""
    saved = pd.read_csv(path, dtype=str, keep_default_na=False)
    keys = [c for c in ("path", "frame") if c in saved.columns and c in index.columns]
    left = index.drop(columns="split").copy()
    for k in keys:
        left[k] = left[k].astype(str)
    merged = left.merge(saved.drop_duplicates(keys), on=keys, how="left")
    for k in keys:
        merged[k] = index[k].to_numpy()
    merged["split"] = merged["split"].fillna("")
    return merged


def evaluate_items(
    task: Task,
    model: nn.Module,
    items: pd.DataFrame,
    split: str,
    run_dir: str | Path,
    device: torch.device,
    dtype: torch.dtype | None = None,
    model_name: str = "",
    n_boot: int | None = None,
    extra: dict[str, Any] | None = None,
    by: Sequence[BySpec] = (),
    levels: pd.DataFrame | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Predict `items`, compute metrics, write predictions_<split>.csv, metrics_<split>.json and plots/.

    The metrics say what the bootstrap resampled (`resampled`: patients only when the data named them); `extra`
    adds run facts such as the count of near-duplicates of training images in this split. With `by` (and
    `levels` from breakdown.by_levels): a level column per spec in the predictions, metrics per level under "by"
    in the json, and by_<column>_<split>.csv/.md. `info` is stored at the top of the json.
    """
    from sonokit.data.leakage import resample_unit
    from sonokit.evaluate.bootstrap import name_resampled_unit
    from sonokit.evaluate.breakdown import (
        attach_levels,
        breakdown_table,
        table_records,
        write_breakdown,
    )
    from sonokit.predict.runner import public_columns
    from sonokit.train.engine import infer, make_loader

    cfg = task.cfg
    run_dir = Path(run_dir)
    boots = cfg.n_boot if n_boot is None else n_boot
    dataset = task.build_dataset(items, train=False)
    loader = make_loader(dataset, task, cfg.eval_batch_size or cfg.batch_size, cfg.num_workers, device)
    loss, collected = infer(task, model, loader, device, dtype, cfg.channels_last, desc=f"evaluate {split}")
    preds = task.predictions(collected, items)
    preds["model"] = model_name or run_dir.name
    if by and levels is not None:
        preds = attach_levels(preds, levels)
    metrics = task.metrics(preds, boots, cfg.seed)
    unit = resample_unit(items) if cfg.bootstrap_by_group else "items"
    metrics = {
        "split": split,
        **(info or {}),
        "loss": loss if loss == loss else None,
        **name_resampled_unit(metrics, unit),
    }
    metrics.update(extra or {})
    if by and levels is not None:
        metrics["by"] = {}
        for spec in by:
            order = levels.attrs.get("order", {}).get(spec.key) or sorted(set(levels[spec.key]))
            table = breakdown_table(task, preds, spec.key, order, boots, cfg.seed, metrics)
            write_breakdown(table, spec, run_dir, split)
            metrics["by"][spec.column] = {
                "bins": list(spec.edges) or (f"q{spec.quantiles}" if spec.quantiles else None),
                "table": table_records(table),
            }
    write_csv(public_columns(preds), run_dir / f"predictions_{split}.csv")
    atomic_write_json(run_dir / f"metrics_{split}.json", metrics)
    plot_dir = run_dir / "plots"
    task.plots(preds, metrics, plot_dir, split)
    task.after_evaluate(model, dataset, items, preds, plot_dir, split)
    return metrics


def is_training_data(run: Any, data: str | Path | None) -> bool:
    """Whether `data` is the data set the run was trained on (None: yes, the run's own)."""
    return data is None or Path(data).resolve() == Path(run.cfg.data or "").resolve()


def evaluation_rows(run: Any, data: str | Path | None, split: str) -> tuple[pd.DataFrame, bool]:
    """(index rows to evaluate, whether they come from the training data), never re-splitting other data.

    The training data gets the run's saved splits (or the same seeded re-derivation), so `test` is the run's
    own test split. Other data is read as it is: `split` "all" takes every row, any other value the rows of the
    data's own split column; labels outside the run's classes are an error before anything is predicted.
    """
    task = run.task
    same = is_training_data(run, data)
    if data is not None:
        task.cfg = task.cfg.model_copy(update={"data": str(data)})
    if same:
        index = task.prepare_index()
        if (run.run_dir / SPLITS_FILE).is_file():
            index = apply_saved_splits(index, run.run_dir / SPLITS_FILE)
    else:
        index = task.read_index()
        if index.empty:
            raise InputError("the dataset index has no rows", task.cfg.data)
        task.setup_classes(index)  # a trained run keeps its classes: unknown labels stop here
        if "split" not in index.columns:
            index = index.assign(split="")
    rows = index if split == "all" else index[index["split"] == split]
    if rows.empty:
        found = ", ".join(sorted(s or '""' for s in index["split"].astype(str).unique()))
        raise InputError(
            f"no rows in split {split!r} (splits here: {found}; or use --split all)", task.cfg.data
        )
    return rows.reset_index(drop=True), same


def column_aliases(cfg: Any) -> dict[str, str]:
    """The data's own column names of the renamed index columns (--by plane when plane is the label column)."""
    pairs = (
        (cfg.label_col, "label"),
        (cfg.group_col, "group"),
        (cfg.path_col, "path"),
        (cfg.split_col, "split"),
    )
    return {str(name): col for name, col in pairs if name}


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    device: str = "auto",
    n_boot: int | None = None,
    by: Sequence[BySpec] = (),
) -> dict[str, Any]:
    """Evaluate a trained run on `split` of its training data and refresh report.html (all in the run folder).

    The split is the one the run was trained with (splits.csv, or re-derived with its seed and fractions).
    Other data is evaluate_external's job: it writes to its own folder and never touches the run.
    """
    from sonokit.evaluate.breakdown import by_levels
    from sonokit.evaluate.report import write_report
    from sonokit.predict.runner import load_run
    from sonokit.train.engine import amp_dtype

    run = load_run(run_dir, device)
    if not is_training_data(run, data):
        raise InputError(
            f"not the data this run was trained on ({run.cfg.data}); to score other data pass --out DIR "
            "(an external evaluation folder, the run folder is never written)",
            data,
        )
    rows, _ = evaluation_rows(run, data, split)
    task = run.task
    levels = by_levels(rows, by, task.cfg.data or "", column_aliases(task.cfg)) if by else None
    near = ((run.card.get("training_data") or {}).get("leakage") or {}).get("near_duplicates") or {}
    extra = {"near_duplicates_in_train": near[split]} if split in near else None
    metrics = evaluate_items(
        task,
        run.model,
        task.expand(rows),
        split,
        run.run_dir,
        run.device,
        amp_dtype(task.cfg, run.device),
        model_name=run.name,
        n_boot=n_boot,
        extra=extra,  # the training run's count holds for its own split of its own data only
        by=by,
        levels=levels,
    )
    write_report(run.run_dir)
    return metrics
