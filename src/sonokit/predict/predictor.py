"""One predictor per run: a trained run (from its folder or in memory) with the entry points that predict on it.

`Predictor.load(RUN)` loads the run folder (`Predictor.from_model` wraps a task and a network in memory) (sonokit.core.run) and, when asked, puts an onnxruntime session behind
the model (sonokit.export.backend). `table` predicts files into a DataFrame in memory, `to_csv` streams them into
a CSV (sonokit.predict.stream) and `items` runs item rows the task already made and `arrays` images already in memory; all four run the same batch
step (sonokit.core.loop), so a file gets the same row whichever way it is predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sonokit.core.loop import amp_dtype, forward_batch, infer_items
from sonokit.core.run import LoadedRun, fold_runs, input_items, load_run, public_columns
from sonokit.errors import InputError

if TYPE_CHECKING:
    from sonokit.predict.stream import StreamResult


def labels_lookup(labels: str | Path | None, run: LoadedRun) -> dict[str, str]:
    """Absolute path -> label from a dataset/table, for the y_true column."""
    if labels is None:
        return {}
    from sonokit.data import load_index

    df = load_index(labels, check_files=False)
    if "label" not in df.columns:
        raise InputError("labels table has no label column", labels)
    return dict(zip(df["path"].map(lambda p: str(Path(p).resolve())), df["label"].astype(str), strict=True))


def fold_ensemble(run_dir: str | Path, folds: Sequence[Path], device: str = "auto") -> LoadedRun:
    """One run whose network is the mean of the folds' (sonokit.models.ensemble), with the first fold's task.

    For new data only: every file of the cross-validation data was in some fold's training split, so `evaluate`
    keeps to one fold at a time."""
    from sonokit.models.ensemble import MeanEnsemble

    runs = [load_run(d, device) for d in folds]
    first = runs[0]
    for run in runs[1:]:
        if run.task.name != first.task.name or run.task.classes != first.task.classes:
            raise InputError(
                f"folds disagree on task or classes ({run.run_dir.name} vs {first.run_dir.name})", run_dir
            )
    card = {"name": Path(run_dir).name, "ensemble": [r.name for r in runs]}
    return LoadedRun(
        Path(run_dir), first.cfg, first.task, MeanEnsemble([r.model for r in runs]).eval(), card, first.device
    )


class Predictor:
    """A loaded run and the ways to predict with it (see the module docstring)."""

    def __init__(self, run: LoadedRun) -> None:
        self.run = run

    @classmethod
    def load(
        cls, run_dir: str | Path, device: str = "auto", backend: str = "torch", threads: int | None = None
    ) -> Predictor:
        """backend "onnx" (or "auto" when a current model.onnx is there) runs the model in onnxruntime: same
        outputs, no gradients (Grad-CAM and the uncertainty columns need "torch", the default).

        The folder of a cross-validation (`train --folds K`: RUN/fold_<i>, no weights of its own) predicts with
        the mean of its folds' networks (fold_ensemble; torch)."""
        folds = fold_runs(run_dir)
        if folds:
            if backend == "onnx":
                raise InputError(
                    "a cross-validation folder predicts with torch (its folds have no joint ONNX export)",
                    run_dir,
                )
            return cls(fold_ensemble(run_dir, folds, device))
        run = load_run(run_dir, device)
        if backend != "torch":
            from sonokit.export.backend import attach_backend

            attach_backend(run, backend, threads)  # type: ignore[arg-type]
        return cls(run)

    @classmethod
    def from_model(cls, task: Any, model: Any, device: str = "cpu", name: str = "model") -> Predictor:
        """A task and a network in memory (just trained, or built by hand) without a run folder."""
        import torch

        run = LoadedRun(
            Path(name), task.cfg, task, model.to(device).eval(), {"name": name}, torch.device(device)
        )
        return cls(run)

    def items(
        self, items: pd.DataFrame, batch_size: int | None = None, desc: str = "predict"
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray], Any]:
        """Prediction rows for item rows of the task's index, the collected arrays and the dataset built."""
        _, collected, dataset = infer_items(self.run, items, batch_size, desc)
        preds = self.run.task.predictions(collected, items)
        preds["model"] = self.run.name
        return preds, collected, dataset

    def arrays(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The task's collected outputs (e.g. probs; the quality task adds ssim_pred) for uint8 images already in
        memory, preprocessed as in training (Task.array_batch)."""
        import torch

        run = self.run
        batch = run.task.array_batch(images)
        run.model.eval()
        with torch.no_grad():
            batch, outputs, _ = forward_batch(
                run.task, run.model, batch, run.device, amp_dtype(run.cfg, run.device), run.cfg.channels_last
            )
        return run.task.collect(outputs, batch)

    def table(
        self, inputs: Sequence[str | Path], batch_size: int | None = None, labels: str | Path | None = None
    ) -> tuple[pd.DataFrame, list[str]]:
        """Predictions for every readable input in memory (and one error line per unreadable one).

        Folders are expanded. Videos give a row per frame plus an aggregated row with frame "all".
        """
        items, errors = input_items(self.run, inputs)
        if items.empty:
            return pd.DataFrame(), errors
        preds, _, _ = self.items(items, batch_size)
        lookup = labels_lookup(labels, self.run)
        if lookup:
            preds["y_true"] = preds["path"].map(lambda p: lookup.get(str(Path(p).resolve()), ""))
        return public_columns(preds), errors

    def to_csv(
        self,
        inputs: Sequence[str | Path],
        out: str | Path,
        batch_size: int | None = None,
        workers: int = 0,
        resume: bool = False,
        labels: str | Path | None = None,
        uncertainty: bool = False,
    ) -> StreamResult:
        """Stream predictions into `out` (.path: the CSV or None when nothing was read, .errors: one line per
        unreadable input); `uncertainty` adds the fitted scorer's columns (sonokit.predict.uncertainty)."""
        from sonokit.predict.stream import stream_predict

        if uncertainty and "ensemble" in self.run.card:
            raise InputError(
                "--uncertainty scores with one run's fitted scorer: pass a fold folder (fold_<i>)",
                self.run.run_dir,
            )
        return stream_predict(
            self.run,
            inputs,
            out,
            batch_size,
            workers=workers,
            resume=resume,
            labels=labels,
            uncertainty=uncertainty,
        )


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
) -> StreamResult:
    """`sonokit predict`: load a run and stream its predictions into `out`."""
    backend = "torch" if uncertainty and backend == "auto" else backend
    predictor = Predictor.load(run_dir, device, backend)
    return predictor.to_csv(inputs, out, batch_size, workers, resume, labels, uncertainty)
