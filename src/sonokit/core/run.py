"""The run folder: its file names, loading a trained run, and the split every later step reuses.

A run folder holds config.yaml, model.safetensors (+ model_card.json, written last: a finished run), the last
checkpoint and splits.csv (the split of every index row). Evaluation, retrieval, applicability and the quality
sweep take their rows from `split_rows`/`split_index` here and the valve cascade applies its classifier run's
saved splits, so `test` means the run's own test split everywhere. A cross-validation folder holds fold_<i> runs
and metrics_cv.json instead of weights (`fold_runs`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn

from sonokit.core.checkpoint import read_weights
from sonokit.core.config import TrainConfig, load_run_config
from sonokit.core.distributed import pick_device
from sonokit.core.loop import channels_last_model
from sonokit.core.registry import get_task
from sonokit.errors import InputError, ModelError
from sonokit.utils import write_csv

if TYPE_CHECKING:
    from sonokit.tasks.base import Task

SPLITS = ("train", "val", "test")
CHECKPOINT = "checkpoint_last.pt"
WEIGHTS = "model.safetensors"
CARD = "model_card.json"  # written last: its presence marks a finished run
SPLITS_FILE = "splits.csv"


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: TrainConfig
    task: Task
    model: nn.Module
    card: dict[str, Any]
    device: torch.device

    @property
    def name(self) -> str:
        return str(self.card.get("name") or self.run_dir.name)


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """Config, task, model card and best weights of a run folder, ready for inference (eval mode).

    The torch model; sonokit.predict.Predictor puts an onnxruntime session behind it when asked."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run folder not found", run_dir)
    cfg = load_run_config(run_dir)
    weights_path = run_dir / WEIGHTS
    state, card = read_weights(weights_path)
    if card is None:
        card_path = run_dir / CARD
        if not card_path.is_file():
            raise ModelError(
                f"{weights_path}: no model card in the weights and no model_card.json beside them"
            )
        card = json.loads(card_path.read_text(encoding="utf-8"))
    task = get_task(cfg.task)(cfg)
    task.load_state(card.get("task_state") or card)
    model = task.build_model(load_init_weights=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(
            f"{weights_path}: weights do not fit {cfg.model} ({str(err).splitlines()[0]})"
        ) from err
    dev = pick_device(device)
    model.to(dev).eval()
    if cfg.channels_last:  # as trained: inputs arrive channels-last too (core.loop.to_device)
        channels_last_model(model)
    return LoadedRun(run_dir, cfg, task, model, card, dev)


def fold_runs(run_dir: str | Path) -> list[Path]:
    """The fold run folders of a cross-validation folder (RUN/metrics_cv.json, no weights at its top), else []."""
    run_dir = Path(run_dir)
    summary = run_dir / "metrics_cv.json"
    if (run_dir / WEIGHTS).is_file() or not summary.is_file():
        return []
    return [run_dir / name for name in json.loads(summary.read_text(encoding="utf-8")).get("runs", [])]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_fingerprint(run_dir: str | Path) -> str:
    """sha256 of the run's weights: anything fitted to other weights (an index, a scorer) is stale."""
    return file_sha256(Path(run_dir) / WEIGHTS)


# ---------------------------------------------------------------------------------------------- splits


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


def is_training_data(run: Any, data: str | Path | None) -> bool:
    """Whether `data` is the data set the run was trained on (None: yes, the run's own)."""
    return data is None or Path(data).resolve() == Path(run.cfg.data or "").resolve()


def split_index(run: Any, data: str | Path | None = None, resplit: bool = False) -> tuple[pd.DataFrame, bool]:
    """(the index with a split per row, whether it is the training data), never re-splitting other data.

    The training data gets the run's saved splits (or the same seeded re-derivation), so `test` is the run's own
    test split. Other data is read as it is, with its own split column ("" where it has none); labels outside
    the run's classes are an error before anything is predicted. `resplit` instead gives other data a fresh
    seeded split with the run's fractions (what fitting calibration or an index on other data needs).
    """
    task = run.task
    same = is_training_data(run, data)
    if data is not None:
        task.cfg = task.cfg.model_copy(update={"data": str(data)})
    if task.cfg.data is None:
        raise InputError("the run does not record its dataset: pass --data PATH", run.run_dir)
    if same or resplit:
        index = task.prepare_index()
        if same and (run.run_dir / SPLITS_FILE).is_file():
            index = apply_saved_splits(index, run.run_dir / SPLITS_FILE)
        return index, same
    index = task.read_index()
    if index.empty:
        raise InputError("the dataset index has no rows", task.cfg.data)
    task.setup_classes(index)  # a trained run keeps its classes: unknown labels stop here
    if "split" not in index.columns:
        index = index.assign(split="")
    return index, False


def split_rows(run: Any, data: str | Path | None, split: str) -> tuple[pd.DataFrame, bool]:
    """The index rows of one split ("all": every row) and whether they come from the training data."""
    index, same = split_index(run, data)
    rows = index if split == "all" else index[index["split"] == split]
    if rows.empty:
        found = ", ".join(sorted(s or '""' for s in index["split"].astype(str).unique()))
        raise InputError(
            f"no rows in split {split!r} (splits here: {found}; or use --split all)", run.task.cfg.data
        )
    return rows.reset_index(drop=True), same


def split_items(task: Task, index: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Item rows per split (frames expanded); empty splits are left out."""
    items = {}
    for split in SPLITS:
        rows = index[index["split"] == split]
        if len(rows):
            items[split] = task.expand(rows)
    return items


# ---------------------------------------------------------------------------------------------- new inputs


def input_items(run: LoadedRun, inputs: Sequence[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """The task's item rows for the readable inputs (folders expanded) and one error line per unreadable one."""
    from sonokit.io import find_inputs

    files: list[Path] = []
    errors: list[str] = []
    for raw in inputs:
        try:
            files.extend(find_inputs([raw]))
        except InputError as err:
            errors.append(str(err))
    items, bad = run.task.predict_items(sorted(set(files)))
    return items, errors + [str(reason) for _, reason in bad]


def public_columns(preds: pd.DataFrame) -> pd.DataFrame:
    """Drop the private "_" columns (patient groups used for bootstrap) before writing."""
    return preds[[c for c in preds.columns if not str(c).startswith("_")]]
