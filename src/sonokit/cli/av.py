"""`sonokit av predict|evaluate|heuristic|experiments`: the aortic-valve cascade (option parsing only; the work is
in sonokit.av)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from sonokit.utils.logs import quiet_command

av_app = typer.Typer(
    help="Aortic valve: detect the valve in PSAX frames, crop it, classify calcification; heuristic baseline; "
    "the paper's experiment tables. Train the two models with `sonokit train av-detect|av-calcification`.",
    no_args_is_help=True,
)


def _ints(values: list[str] | None, name: str) -> list[int] | None:
    from sonokit.av.experiments import parse_list
    from sonokit.errors import InputError

    items = parse_list(values)
    if items is None:
        return None
    try:
        return [int(v) for v in items]
    except ValueError as err:
        raise InputError(f"{name} takes whole numbers, got {items}") from err


QUIET = typer.Option(False, "--quiet", help="No progress bars, warnings only.")


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


@av_app.command("predict")
def predict_cmd(
    det_run: Path = typer.Argument(..., help="av-detect run folder."),
    cls_run: Path = typer.Argument(..., help="av-calcification run folder."),
    inputs: list[Path] = typer.Argument(
        ..., help="Frames: images, videos/DICOM (every --every-th frame), folders."
    ),
    out: Path = typer.Option(
        ..., "--out", help="CSV: one row per frame (status ok / no valve found / not applicable / error)."
    ),
    crops: Path | None = typer.Option(
        None, "--crops", help="Folder for the crop image of every detected valve."
    ),
    every: int = typer.Option(1, "--every", min=1, help="Frame step for videos and multi-frame DICOM."),
    score_threshold: float | None = typer.Option(
        None, "--score-threshold", help="Detector threshold (run's own)."
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="Dataset folder / boxes CSV giving y_true per path."
    ),
    device: str = typer.Option("auto", "--device"),
    applicability: bool = typer.Option(
        True,
        "--applicability/--no-applicability",
        help="Frames that do not look like the detector's training data get status 'not applicable' and no "
        "answer (the check is fitted once from the run's data and kept in RUN/applicability/).",
    ),
    quiet: bool = QUIET,
) -> None:
    """Detect, crop and classify: box in original pixels, crop window, calcified probability per frame."""
    from sonokit.av.cascade import ERROR, NO_VALVE, NOT_APPLICABLE, predict_to_csv

    quiet_command(quiet)
    result = predict_to_csv(
        det_run, cls_run, list(inputs), out, crops, every, device, score_threshold, labels, applicability
    )
    table, errors = result.table, result.errors
    for err in errors:
        typer.echo(f"error: {err}", err=True)
    ok = table["status"] == "ok"
    typer.echo(
        f"{int(ok.sum())} valve(s) found, {int((table['status'] == NO_VALVE).sum())} frame(s) without a "
        f"valve, {int((table['status'] == NOT_APPLICABLE).sum())} not applicable, "
        f"{int((table['status'] == ERROR).sum())} error(s); wrote {out}"
    )
    if errors:
        sys.exit(
            1
        )  # per-file errors, as every command; main() runs click with standalone_mode=False, which swallows typer.Exit codes


@av_app.command("evaluate")
def evaluate_cmd(
    det_run: Path = typer.Argument(..., help="av-detect run folder."),
    cls_run: Path = typer.Argument(..., help="av-calcification run folder."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for cascade_<split>.csv/.md, metrics JSON, predictions."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset (default: the classifier's own, its split)."
    ),
    split: str = typer.Option("test", "--split", help="train, val, test or all."),
    thresholds: list[str] = typer.Option(
        None, "--thresholds", help="Heuristic thresholds (default 190,200,210,220)."
    ),
    min_pixels: list[str] = typer.Option(
        None, "--min-pixels", help="Heuristic minimum white pixels (default 1,5)."
    ),
    n_boot: int = typer.Option(1000, "--n-boot", min=0),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = QUIET,
) -> None:
    """Held-out calcification metrics of the cascade (detector boxes) against the heuristic baseline."""
    quiet_command(quiet)
    from sonokit.av.cascade import evaluate_cascade

    s = evaluate_cascade(
        det_run,
        cls_run,
        data,
        split,
        out,
        _ints(thresholds, "--thresholds"),
        _ints(min_pixels, "--min-pixels"),
        n_boot,
        device,
    )
    d, c, b = s["detector"], s["cascade"], s["best_heuristic"]
    typer.echo(
        f"{split}: {s['n_frames']} frames, {s['n_patients']} patients, {s['no_valve_found']} without a valve"
    )
    typer.echo(
        f"detector: precision {_f(d['precision'])}, recall {_f(d['recall'])}, mAP@0.5 {_f(d['map50'])}, "
        f"mean IoU {_f(d['mean_iou'])}"
    )
    typer.echo(
        f"cascade: F1 {_f(c['f1'])} {_ci(c['f1_ci95'])}, precision {_f(c['precision'])}, "
        f"recall {_f(c['recall'])}, accuracy {_f(c['accuracy'])}"
    )
    if b is not None:
        typer.echo(
            f"best heuristic, paper's rule (threshold {b['threshold']}, any white pixel, detector crops): "
            f"F1 {_f(b['f1'])}"
        )
    a = s["best_heuristic_any"]
    if a is not None:
        typer.echo(
            f"best heuristic row of all (threshold {a['threshold']}, >= {a['min_pixels']} pixels, "
            f"{a['boxes']} crops): F1 {_f(a['f1'])}"
        )
    typer.echo(f"wrote {out}")


@av_app.command("heuristic")
def heuristic_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset folder (boxes.csv + labels.csv)."),
    out: Path = typer.Option(..., "--out", help="Table CSV (a Markdown copy is written beside it)."),
    split: str = typer.Option("all", "--split", help="train, val, test (split as the av tasks do) or all."),
    thresholds: list[str] = typer.Option(None, "--thresholds", help="Default 190,200,210,220."),
    min_pixels: list[str] = typer.Option(None, "--min-pixels", help="Default 1,5."),
    margin: float = typer.Option(0.1, "--margin", min=0.0, help="Box enlarged by this fraction per side."),
    noise_reduction: bool = typer.Option(False, "--noise-reduction", help="Subtract the crop minimum first."),
    seed: int = typer.Option(0, "--seed", help="Split seed (as the training runs') and bootstrap seed."),
    n_boot: int = typer.Option(1000, "--n-boot", min=0),
    quiet: bool = QUIET,
) -> None:
    """The baseline on ground-truth crops: calcified if any pixel >= threshold (or >= N pixels)."""
    from sonokit.av.heuristic import evaluate_heuristic

    quiet_command(quiet)
    table = evaluate_heuristic(
        data,
        out,
        split,
        _ints(thresholds, "--thresholds"),
        _ints(min_pixels, "--min-pixels"),
        margin,
        noise_reduction,
        seed,
        n_boot,
    )
    for _, r in table.iterrows():
        typer.echo(
            f"threshold {r['threshold']} min {r['min_pixels']}: F1 {_f(r['f1'])}, precision "
            f"{_f(r['precision'])}, recall {_f(r['recall'])}"
        )
    typer.echo(f"wrote {out}")


@av_app.command("experiments")
def experiments_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset folder (boxes.csv + labels.csv)."),
    out: Path = typer.Option(..., "--out", help="Folder for runs/, detector.*, classifier.*, tables.md."),
    quick: bool = typer.Option(
        False, "--quick", help="A tiny version (2 augmentation sets, 1 epoch, 1 backbone)."
    ),
    backbones: list[str] = typer.Option(None, "--backbones", help="Default tinycnn,mobilenetv3_small."),
    poolings: list[str] = typer.Option(None, "--poolings", help="avg, max, none (default all three)."),
    augment_sets: list[str] = typer.Option(
        None, "--augment-sets", help="Default: none, each alone, all, translation+rotation."
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs of every run."),
    det_epochs: int | None = typer.Option(None, "--det-epochs", min=1),
    cls_epochs: int | None = typer.Option(None, "--cls-epochs", min=1),
    seed: int = typer.Option(0, "--seed"),
    n_boot: int | None = typer.Option(None, "--n-boot", min=0),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = QUIET,
) -> None:
    """Reproduce the shape of the paper's tables: detector per augmentation set, classifier per backbone x
    pooling, with the heuristic rows (CSV + Markdown)."""
    quiet_command(quiet)
    from sonokit.av.experiments import ExperimentPlan, parse_list, run_experiments

    kw = {"seed": seed, "device": device}
    for key, value in (
        ("backbones", parse_list(backbones)),
        ("poolings", parse_list(poolings)),
        ("augment_sets", parse_list(augment_sets)),
        ("n_boot", n_boot),
        ("det_epochs", det_epochs or epochs),
        ("cls_epochs", cls_epochs or epochs),
    ):
        if value is not None:
            kw[key] = value
    plan = ExperimentPlan.quick(**kw) if quick else ExperimentPlan(**kw)
    written = run_experiments(data, out, plan)
    typer.echo(written["tables_md"].read_text(encoding="utf-8"))
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(av_app, name="av")
