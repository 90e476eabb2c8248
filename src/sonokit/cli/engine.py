"""`sonokit train`, `sonokit evaluate`, `sonokit predict`: option parsing only; the work is in sonokit.train,
sonokit.evaluate and sonokit.predict."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import typer

from sonokit.errors import InputError
from sonokit.utils.logs import quiet_command

# ordinal tasks (options.ordinal, e.g. lus): a second line, so the headline stays as it was
_ORDINAL = (
    "qwk",
    "score_mae",
    "video_qwk",
    "video_score_mae",
    "patient_sum_mae",
    "patient_sum_spearman",
)


def _headline(metrics: dict, keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        if metrics.get(key) is not None:
            ci = metrics.get(f"{key}_ci95")
            ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else ""
            parts.append(f"{key} {metrics[key]:.3f}{ci_text}")
    return ", ".join(parts)


def _echo_metrics(task: str, name: str, metrics: dict) -> None:
    """The task's headline metrics; for ordinal scores a second line with kappa, MAE in points and the patient
    sums."""
    from sonokit.tasks import get_task

    headline = [k for k in get_task(task).headline if k not in _ORDINAL]
    typer.echo(f"{name}: {_headline(metrics, headline)}")
    ordinal = _headline(metrics, _ORDINAL)
    if ordinal:
        n = metrics.get("n_patients")
        patients = f" ({n} patient{'' if n == 1 else 's'})" if n is not None else ""
        typer.echo(f"{name} ordinal{patients}: {ordinal}")


def train_cmd(
    task: str = typer.Argument(
        ..., help="Task, e.g. fetal-plane, lus, classify, quality, ef (a wrong name lists all)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset: CSV table, image folder or FETAL_PLANES_DB."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/<task>/<model>-s<seed>)."),
    model: str | None = typer.Option(None, "--model", help="Backbone name (`sonokit models list`)."),
    head: str | None = typer.Option(None, "--head", help="linear, avg, max, none or attention-mlp."),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: float | None = typer.Option(None, "--lr", min=0.0),
    config: Path | None = typer.Option(None, "--config", help="YAML config; flags override it."),
    seed: int | None = typer.Option(None, "--seed"),
    folds: int | None = typer.Option(None, "--folds", min=0, help="Stratified group k-fold CV with K folds."),
    fold_col: str | None = typer.Option(
        None, "--fold-col", help="With --folds: take the folds from this column (e.g. published folds)."
    ),
    group_col: str | None = typer.Option(None, "--group-col", help="Patient column of a table."),
    label_col: str | None = typer.Option(None, "--label-col"),
    path_col: str | None = typer.Option(None, "--path-col"),
    split_col: str | None = typer.Option(None, "--split-col"),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="Initial weights: a file (state dict/safetensors) or a `sonokit pretrain` run folder.",
    ),
    pretrained: str | None = typer.Option(
        None,
        "--init",
        "--pretrained",
        help="Initial weights without --weights: none (random, the default), ultrasound (the network's backbone "
        "shipped in the package: tinycnn, resnet10_w32; `sonokit models shipped`), auto (it where one fits the "
        "network, else random).",
    ),
    size: int | None = typer.Option(None, "--size", min=8, help="Input side in pixels."),
    channels: int | None = typer.Option(None, "--channels", help="1 (grayscale) or 3."),
    patience: int | None = typer.Option(None, "--patience", min=0, help="Early stopping patience (0 = off)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1 ..."),
    workers: int | None = typer.Option(None, "--workers", min=0, help="DataLoader worker processes."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    amp: str | None = typer.Option(None, "--amp", help="auto (bf16 on GPU), bf16 or off."),
    sets: list[str] | None = typer.Option(
        None,
        "--set",
        help="Any config option, repeatable: --set options.video_rule=mean --set augment.hflip=false",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its last checkpoint."
    ),
    unlabelled: list[Path] | None = typer.Option(
        None,
        "--unlabelled",
        help="lv-seg/lv-trace: unlabelled cines (folder or files, repeatable) to self-train on: a teacher in "
        "OUT/teacher pseudo-labels them, the student in OUT trains on both.",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars, warnings only."),
) -> None:
    """Train a model; evaluates val and test at the end and writes the run folder."""
    from sonokit.core.config import parse_sets, resolve_config, resume_config
    from sonokit.tasks import get_task
    from sonokit.train.engine import default_run_dir, train

    quiet_command(quiet)
    overrides = {
        "data": str(data) if data else None,
        "out": str(out) if out else None,
        "model": model,
        "head": head,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "folds": folds,
        "fold_col": fold_col,
        "group_col": group_col,
        "label_col": label_col,
        "path_col": path_col,
        "split_col": split_col,
        "weights": str(weights) if weights else None,
        "pretrained": pretrained,
        "size": size,
        "channels": channels,
        "patience": patience,
        "device": device,
        "num_workers": workers,
        "threads": threads,
        "amp": amp,
    }
    task_cls = get_task(task)
    extra = parse_sets(sets)
    if resume:
        run_dir = out
        if run_dir is None:
            run_dir = default_run_dir(
                resolve_config(task, config, overrides, task_defaults=task_cls.defaults)
            )
        cfg = resume_config(run_dir, {**{k: v for k, v in overrides.items() if k != "out"}, **extra})
    else:
        cfg = resolve_config(task, config, overrides, task_defaults=task_cls.defaults, sets=extra)
    if cfg.data is None:
        raise InputError("no dataset given: pass --data PATH (or data: in --config)")
    if unlabelled:
        from sonokit.echo.self_train import train_with_unlabelled

        run_dir = train_with_unlabelled(cfg, unlabelled)
    else:
        run_dir = train(cfg)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    typer.echo(f"run folder: {run_dir}")
    for name in ("metrics_cv.json", "metrics_val.json", "metrics_test.json"):
        path = Path(run_dir) / name
        if path.is_file():
            metrics = json.loads(path.read_text(encoding="utf-8"))
            if name == "metrics_cv.json":
                metrics = {k: v["mean"] for k, v in metrics["metrics"].items()}
            _echo_metrics(cfg.task, name[len("metrics_") : -5], metrics)


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `sonokit train`."),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Dataset (default: the one the run was trained on). Other data needs --out: every row is "
        "scored, nothing is re-split.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Evaluation folder to write (metrics, predictions, plots, by-tables, report.html); the run folder "
        "is then only read. Required for data other than the run's own.",
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="train, val, test, or all (every row). Default: test of the training data, all of other data.",
    ),
    by: list[str] | None = typer.Option(
        None,
        "--by",
        help="Metrics per level of a column, repeatable or a comma list: --by site, --by vendor,site; a numeric "
        "column in bins: --by ef:30,40,50 (<30, 30-40, 40-50, >=50) or quantile bins --by ef:q4.",
    ),
    device: str = typer.Option("auto", "--device"),
    n_boot: int | None = typer.Option(None, "--n-boot", min=0, help="Bootstrap resamples for the 95% CIs."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Evaluate a run: metrics (95% CIs), predictions, plots, report.html; with --out on any data (external
    validation) into a folder of its own, with --by per site, vendor or EF range."""
    from sonokit.evaluate.breakdown import markdown_table, parse_by

    quiet_command(quiet)
    specs = parse_by(by)
    if out is not None:
        from sonokit.evaluate.external import evaluate_external

        metrics = evaluate_external(run, data, out, split=split, by=specs, device=device, n_boot=n_boot)
        name = metrics["split"]
        where = out
        typer.echo(f"{name}: {metrics['rows']} rows of {metrics['data']} (split {metrics['data_split']})")
    else:
        from sonokit.evaluate.runner import evaluate_run

        name = split or "test"
        metrics = evaluate_run(run, data=data, split=name, device=device, n_boot=n_boot, by=specs)
        where = run
    from sonokit.core.config import load_run_config

    _echo_metrics(load_run_config(run).task, name, metrics)
    for column, entry in (metrics.get("by") or {}).items():
        import pandas as pd

        typer.echo(f"\nby {column}:")
        typer.echo(markdown_table(pd.DataFrame(entry["table"]), column), nl=False)
    typer.echo(f"wrote {where / f'metrics_{name}.json'}")


def predict_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `sonokit train`."),
    inputs: list[Path] = typer.Argument(..., help="Images, videos, DICOM files or folders."),
    out: Path = typer.Option(..., "--out", help="Predictions CSV to write."),
    labels: Path | None = typer.Option(
        None, "--labels", help="Optional table/dataset giving y_true per path."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device"),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="torch, onnx, or auto: onnx when RUN/model.onnx exists and matches the weights.",
    ),
    workers: int = typer.Option(0, "--workers", min=0, help="Decoding worker processes."),
    resume: bool = typer.Option(
        False, "--resume", help="Skip files already in OUT.partial (or OUT) from an interrupted run."
    ),
    uncertainty: bool = typer.Option(
        False,
        "--uncertainty",
        help="Add calibrated confidence, conformal set, abstain, P(correct), the neighbours' vote and the "
        "combined prediction (needs `sonokit uncertainty RUN` first; classification tasks, torch backend).",
    ),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Predict new files: a row per image or frame, plus an aggregated row per video (frame "all").

    Inputs may be files, folders or CSV tables (a `path` column). Rows are appended to OUT.partial after every
    batch and the file is renamed to OUT at the end; --resume continues an interrupted run.
    """
    from sonokit.predict.predictor import predict_to_csv

    quiet_command(quiet)
    res = predict_to_csv(
        run, list(inputs), out, batch_size=batch_size, device=device, labels=labels,
        backend=backend, workers=workers, resume=resume, uncertainty=uncertainty,
    )  # fmt: skip
    errors = res.errors
    for err in errors:
        typer.echo(f"error: {err}", err=True)
    skipped = f", {res.files_skipped} files already predicted" if res.files_skipped else ""
    if res.path is not None:
        typer.echo(
            f"wrote {res.path}: {res.rows} rows from {res.files_done} files (backend {res.backend}{skipped})"
        )
    if errors:
        # sys.exit, not typer.Exit: main() runs click with standalone_mode=False, which swallows Exit codes.
        # 1 like every other command with per-file errors; 2 is for errors that stop the whole command.
        sys.exit(1)


def register(app: typer.Typer) -> None:
    from sonokit.cli.train_help import TrainCommand

    app.command("train", cls=TrainCommand)(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
