"""Evaluate a model on one split: predictions CSV, metrics JSON with bootstrap CIs, plots; and `evaluate_run`.

Used by the engine at the end of training (val and test) and by `sonokit evaluate RUN --data PATH --split S`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from sonokit.errors import InputError
from sonokit.tasks import Task
from sonokit.utils import atomic_write_json, get_logger, write_csv

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
) -> dict[str, Any]:
    """Predict `items`, compute metrics, write predictions_<split>.csv, metrics_<split>.json and plots/.

    The metrics say what the bootstrap resampled (`resampled`: patients only when the data named them); `extra`
    adds run facts such as the count of near-duplicates of training images in this split."""
    from sonokit.data.leakage import resample_unit
    from sonokit.evaluate.bootstrap import name_resampled_unit
    from sonokit.predict.runner import public_columns
    from sonokit.train.engine import infer, make_loader

    cfg = task.cfg
    run_dir = Path(run_dir)
    dataset = task.build_dataset(items, train=False)
    loader = make_loader(dataset, task, cfg.eval_batch_size or cfg.batch_size, cfg.num_workers, device)
    loss, collected = infer(task, model, loader, device, dtype, cfg.channels_last, desc=f"evaluate {split}")
    preds = task.predictions(collected, items)
    preds["model"] = model_name or run_dir.name
    metrics = task.metrics(preds, cfg.n_boot if n_boot is None else n_boot, cfg.seed)
    unit = resample_unit(items) if cfg.bootstrap_by_group else "items"
    metrics = {"split": split, "loss": loss if loss == loss else None, **name_resampled_unit(metrics, unit)}
    metrics.update(extra or {})
    write_csv(public_columns(preds), run_dir / f"predictions_{split}.csv")
    atomic_write_json(run_dir / f"metrics_{split}.json", metrics)
    plot_dir = run_dir / "plots"
    task.plots(preds, metrics, plot_dir, split)
    task.after_evaluate(model, dataset, items, preds, plot_dir, split)
    return metrics


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    device: str = "auto",
    n_boot: int | None = None,
) -> dict[str, Any]:
    """Evaluate a trained run on `split` of `data` (default: the data it was trained on) and refresh report.html.

    The split is re-derived with the run's seed and fractions, so for the training data it is the same split the
    run was trained with. split="all" evaluates every row (an external test set).
    """
    from sonokit.evaluate.report import write_report
    from sonokit.predict.runner import load_run
    from sonokit.train.engine import amp_dtype

    run = load_run(run_dir, device)
    task = run.task
    if data is not None:
        task.cfg = task.cfg.model_copy(update={"data": str(data)})
    index = task.prepare_index()
    same_data = data is None or Path(data).resolve() == Path(run.cfg.data or "").resolve()
    if same_data and (run.run_dir / SPLITS_FILE).is_file():
        index = apply_saved_splits(index, run.run_dir / SPLITS_FILE)
    rows = index if split == "all" else index[index["split"] == split]
    if rows.empty:
        found = sorted(index["split"].unique())
        raise InputError(
            f"no rows in split {split!r} (splits here: {', '.join(found)}; or use --split all)", task.cfg.data
        )
    items = task.expand(rows)
    near = ((run.card.get("training_data") or {}).get("leakage") or {}).get("near_duplicates") or {}
    extra = {"near_duplicates_in_train": near[split]} if same_data and split in near else None
    metrics = evaluate_items(
        task,
        run.model,
        items,
        split,
        run.run_dir,
        run.device,
        amp_dtype(task.cfg, run.device),
        model_name=run.name,
        n_boot=n_boot,
        extra=extra,  # the training run's count holds for its own split of its own data only
    )
    write_report(run.run_dir)
    return metrics
