"""Load a trained run folder and predict on new files (images, videos, DICOM, folders of them).

Prediction reuses the task's own dataset code, so a file goes through exactly the preprocessing the model was
trained with. A file that cannot be read is reported by name and skipped; the others are still predicted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from sonokit.errors import InputError, ModelError
from sonokit.tasks import Task, get_task
from sonokit.train.checkpoint import read_weights
from sonokit.train.config import TrainConfig, load_run_config
from sonokit.train.distributed import pick_device
from sonokit.utils import get_logger

log = get_logger(__name__)


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


def load_run(
    run_dir: str | Path, device: str = "auto", backend: str = "torch", threads: int | None = None
) -> LoadedRun:
    """Config, task, model card and best weights of a run folder, ready for inference (eval mode).

    backend "onnx" (or "auto" when a current model.onnx is there) puts an onnxruntime session behind run.model
    (sonokit.export.backend): same call, same outputs, but no gradients (Grad-CAM needs "torch", the default).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run folder not found", run_dir)
    cfg = load_run_config(run_dir)
    weights_path = run_dir / "model.safetensors"
    state, card = read_weights(weights_path)
    if card is None:
        card_path = run_dir / "model_card.json"
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
    if cfg.channels_last:  # as trained: inputs arrive channels-last too (engine.to_device)
        from sonokit.train.engine import channels_last_model

        channels_last_model(model)
    run = LoadedRun(run_dir, cfg, task, model, card, dev)
    if backend != "torch":
        from sonokit.export.backend import attach_backend

        attach_backend(run, backend, threads)  # type: ignore[arg-type]
    return run


def _labels_lookup(labels: str | Path | None, run: LoadedRun) -> dict[str, str]:
    """Absolute path -> label from a dataset/table, for the y_true column."""
    if labels is None:
        return {}
    from sonokit.data import load_index

    df = load_index(labels, check_files=False)
    if "label" not in df.columns:
        raise InputError("labels table has no label column", labels)
    return dict(zip(df["path"].map(lambda p: str(Path(p).resolve())), df["label"].astype(str), strict=True))


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


def predict_files(
    run: LoadedRun,
    inputs: list[str | Path],
    batch_size: int | None = None,
    labels: str | Path | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Predictions for every readable input (and one error line per unreadable one).

    Folders are expanded. Videos give a row per frame plus an aggregated row with frame "all".
    """
    from sonokit.train.engine import amp_dtype, infer, make_loader

    items, errors = input_items(run, inputs)
    if items.empty:
        return pd.DataFrame(), errors
    dataset = run.task.build_dataset(items, train=False)
    loader = make_loader(
        dataset, run.task, batch_size or run.cfg.eval_batch_size or run.cfg.batch_size, 0, run.device
    )
    _, collected = infer(
        run.task, run.model, loader, run.device, amp_dtype(run.cfg, run.device), desc="predict"
    )
    preds = run.task.predictions(collected, items)
    lookup = _labels_lookup(labels, run)
    if lookup:
        known = preds["path"].map(lambda p: lookup.get(str(Path(p).resolve()), ""))
        preds["y_true"] = known
    preds["model"] = run.name
    return public_columns(preds), errors


def public_columns(preds: pd.DataFrame) -> pd.DataFrame:
    """Drop the private "_" columns (patient groups used for bootstrap) before writing."""
    return preds[[c for c in preds.columns if not str(c).startswith("_")]]


def predict_to_csv(
    run_dir: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    batch_size: int | None = None,
    device: str = "auto",
    labels: str | Path | None = None,
    backend: str = "auto",
    workers: int = 0,
    resume: bool = False,
    uncertainty: bool = False,
):
    """Load a run and stream predictions into `out` (sonokit.predict.stream); returns its StreamResult
    (.path: the CSV or None when nothing was read, .errors: one line per unreadable input)."""
    from sonokit.predict.stream import stream_predict

    run = load_run(run_dir, device, backend="torch" if uncertainty and backend == "auto" else backend)
    return stream_predict(
        run, inputs, out, batch_size, workers=workers, resume=resume, labels=labels, uncertainty=uncertainty
    )
