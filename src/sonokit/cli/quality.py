"""`sonokit quality sweep|check`: robustness sweeps of a classifier, and the image-quality gate."""

from __future__ import annotations

from pathlib import Path

import typer

quality_app = typer.Typer(
    help="Image quality: robustness to corruptions, and a gate that flags scale-up / blur / noise.",
    no_args_is_help=True,
)


@quality_app.command("sweep")
def sweep_cmd(
    run: Path = typer.Argument(..., help="A trained classifier run folder (sonokit train ...)."),
    data: Path = typer.Option(
        None, "--data", help="Labelled images to sweep on (default: the run's own data)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for curve.csv, thresholds.csv, summary.json and plots/."
    ),
    level: float = typer.Option(
        0.9, "--level", help="Threshold level: accuracy below this counts as failing."
    ),
    relative: bool = typer.Option(
        False,
        "--relative",
        help="Mark thresholds at level x clean accuracy in the plots (both go to the CSV).",
    ),
    corruptions: list[str] = typer.Option(
        ["scale_up", "median_blur", "gaussian_noise"],
        "--corruptions",
        "-c",
        help="Corruptions to sweep (repeat the option); e.g. speckle, motion_blur, gain_loss, contrast_loss, "
        "shadow, jpeg.",
    ),
    steps: int = typer.Option(10, "--steps", min=1, help="Intensity steps from 0 to saturation."),
    max_intensity: list[str] = typer.Option(
        [],
        "--max-intensity",
        help="NAME=VALUE: sweep NAME from 0 to VALUE instead of saturation (repeatable).",
    ),
    split: str = typer.Option("test", "--split", help="train, val, test, or all."),
    max_images: int = typer.Option(
        None, "--max-images", min=1, help="Sweep a seeded sample of this many images."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the corruption noise and of the sample."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
) -> None:
    """Accuracy against corruption intensity and SSIM, and where it falls below --level."""
    from sonokit.errors import InputError
    from sonokit.quality.sweep import sweep_run

    tops: dict[str, float] = {}
    for item in max_intensity:
        name, sep, value = item.partition("=")
        try:
            tops[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--max-intensity expects NAME=VALUE (e.g. scale_up=0.05), got {item!r}")
    summary = sweep_run(
        run, out, data, corruptions, steps, level, relative, split, max_images, seed, device, tops
    )
    typer.echo(f"clean accuracy {summary['clean_accuracy']:.3f} on {summary['n_images']} {split} images")
    mode = "relative" if relative else "absolute"
    for name, th in summary["thresholds"][mode].items():
        if th["intensity"] is None:
            typer.echo(f"{name:>15}: stays above the level over the swept range")
        else:
            typer.echo(f"{name:>15}: threshold intensity {th['intensity']:.4g}, SSIM {th['ssim']:.3f}")
    typer.echo(f"wrote {out}")


@quality_app.command("check")
def check_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    run: Path = typer.Option(..., "--run", help="A trained quality run folder (sonokit train quality)."),
    out: Path = typer.Option(
        ..., "--out", help="CSV: class, probability, estimated SSIM, keep/reject, moved_to."
    ),
    move_rejected: Path = typer.Option(
        None,
        "--move-rejected",
        help="Move rejected images into this folder (never deleted; logged in the CSV).",
    ),
    threshold: float = typer.Option(
        0.5, "--threshold", help="Reject when the probability of any corruption, 1 - p(original), is >= this."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    applicability: bool = typer.Option(
        True,
        "--applicability/--no-applicability",
        help="Mark images that do not look like the run's training data 'not applicable' (never kept or moved); "
        "the check is fitted once from the run's data and kept in RUN/applicability/.",
    ),
) -> None:
    """Gate images: one CSV row each; rejected files are moved only with --move-rejected."""
    from sonokit.quality.gate import NOT_APPLICABLE, check_with_run

    table = check_with_run(run, inputs, out, threshold, move_rejected, device, batch_size, applicability)
    counts = table["decision"].value_counts()
    moved = int((table["moved_to"] != "").sum())
    typer.echo(
        f"{len(table)} images: {counts.get('keep', 0)} kept, {counts.get('reject', 0)} rejected, "
        f"{counts.get(NOT_APPLICABLE, 0)} not applicable, {moved} moved; wrote {out}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(quality_app, name="quality")
