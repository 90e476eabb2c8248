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

from sonokit.core.loop import amp_dtype, infer, make_loader
from sonokit.core.run import fold_runs, is_training_data, load_run, public_columns, split_rows
from sonokit.errors import InputError
from sonokit.utils import atomic_write_json, get_logger, write_csv

if TYPE_CHECKING:
    from sonokit.evaluate.breakdown import BySpec
    from sonokit.tasks.base import Task

log = get_logger(__name__)


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

    if fold_runs(run_dir):
        raise InputError(
            "a cross-validation folder: evaluate one fold (fold_<i>; its test split is its held-out part), "
            "metrics_cv.json holds all of them",
            run_dir,
        )
    run = load_run(run_dir, device)
    if not is_training_data(run, data):
        raise InputError(
            f"not the data this run was trained on ({run.cfg.data}); to score other data pass --out DIR "
            "(an external evaluation folder, the run folder is never written)",
            data,
        )
    rows, _ = split_rows(run, data, split)
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
