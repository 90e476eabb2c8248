"""`sonokit ef ...`: ejection-fraction commands (Simpson's method from tracings; model predictions)."""

from __future__ import annotations

from pathlib import Path

import typer

ef_app = typer.Typer(
    help="Ejection fraction: Simpson's method from EchoNet tracings, model predictions.",
    no_args_is_help=True,
)

_MAX_LISTED = 10


@ef_app.command("simpson")
def simpson(
    data_dir: Path = typer.Argument(..., help="EchoNet-Dynamic folder (FileList.csv, VolumeTracings.csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write (one row per video)."),
    thresholds: str = typer.Option(
        "default", "--thresholds", help="EF class cut-offs: default, aha2022 or bse."
    ),
) -> None:
    """EF/EDV/ESV per video from the expert tracings, with the difference to FileList's EF.

    Volumes are in mL when FileList.csv has SpacingY_mm/SpacingX_mm for every traced video (as `sonokit convert`
    writes), else in px^3; a FileList with spacing for only some of them is refused (one column, one unit).
    """
    from sonokit.clinical import get_thresholds
    from sonokit.data.echonet import TRACINGS, read_echonet
    from sonokit.data.echonet_simpson import simpson_summary, simpson_table
    from sonokit.errors import InputError
    from sonokit.utils import write_csv

    get_thresholds(thresholds)  # an unknown preset fails before any reading
    index = read_echonet(data_dir)
    if not index.tracings:
        raise InputError(f"{TRACINGS} not found or empty: Simpson's method needs the tracings", data_dir)
    table, problems = simpson_table(index, thresholds)
    summary = simpson_summary(table)
    if summary["n"] == 0:
        raise InputError(
            f"no video has usable tracings (2 frames x 21 lines); {len(problems)} checked", data_dir
        )
    write_csv(table, out)
    for name, problem in problems.items():
        typer.echo(f"warning: {name}: {problem}", err=True)
    typer.echo(
        f"{summary['n']} videos: mean |EF_diff| {summary['mean_abs_ef_diff']:.2f} "
        f"(max {summary['max_abs_ef_diff']:.2f}, {summary['n_compared']} with FileList EF) -> {out}"
    )
    if summary["volume_unit"] == "mL":
        edv = summary["mean_abs_edv_diff"]
        typer.echo(
            "volumes in mL (FileList spacing)" + (f": mean |EDV_diff| {edv:.2f} mL" if edv == edv else "")
        )
    else:
        typer.echo(
            "volumes in px^3 (FileList.csv has no SpacingY_mm/SpacingX_mm): not compared with FileList's mL; "
            "EDV_ratio is FileList's mL per px^3"
        )
    if problems:
        names = list(problems)
        more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
        typer.echo(
            f"{len(names)} without usable tracings (rows kept with NaN): {', '.join(names[:_MAX_LISTED])}{more}"
        )


@ef_app.command("predict")
def predict(
    inputs: list[Path] = typer.Argument(
        ..., help="Cines to measure: DICOM, AVI, MP4 files or folders of them."
    ),
    run: list[Path] = typer.Option(
        ...,
        "--run",
        "-r",
        help="Run folder of an ef, lv-seg or lv-trace model; repeat to combine them (each gets its own columns; "
        "the first gives the `ef` column).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write (one row per study)."),
    overlay: Path | None = typer.Option(
        None, "--overlay", help="Folder for review videos (WebM): LV contour and area curve with ED/ES."
    ),
    thresholds: str = typer.Option(
        "default", "--thresholds", help="EF class cut-offs: default, aha2022 or bse."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Frames per batch (clips: half of it)."),
    workers: int = typer.Option(
        2,
        "--workers",
        min=0,
        help="Studies decoded and measured at once, each in a thread with a share of torch's threads "
        "(0 or 1: one after the other).",
    ),
    pane: str | None = typer.Option(
        None,
        "--pane",
        help="Multi-pane screens (dual view, image + overlay) are refused by default: measure pane N "
        "(1, 2, ... left to right / top to bottom; left, right, top, bottom).",
    ),
    applicability: bool = typer.Option(
        True,
        "--applicability/--no-applicability",
        help="Check that each cine looks like each model's training data (fitted once per run from its own "
        "data and kept in RUN/applicability/); a model the cine is foreign to is flagged and gives no headline.",
    ),
) -> None:
    """EF, EDV/ESV, heart-function class, ED/ES frames and EF per beat of each cine (no label files needed).

    Cines are sector-cropped and resized inside; volumes are in mL when the file gives its pixel spacing (a DICOM
    header, or the sidecar / FileList.csv columns `sonokit convert` writes beside an AVI).

    A file that cannot be read gets one `error:` line and an error row, the others are still measured, and the
    exit code is 1.
    """
    from sonokit.echo.predict import predict_to_csv
    from sonokit.errors import InputError
    from sonokit.preprocess.panes import parse_pane

    picked = parse_pane(pane)
    if picked == "all":
        raise InputError(
            "--pane all splits files in `sonokit convert`; ef predict measures one pane (--pane N)"
        )
    result = predict_to_csv(
        list(run),
        list(inputs),
        out,
        thresholds=thresholds,
        overlay_dir=overlay,
        device=device,
        batch_size=batch_size,
        workers=workers,
        pane=picked,
        applicability=applicability,
    )
    table, errors = result.table, result.errors
    for err in errors:
        typer.echo(f"error: {err}", err=True)
    if result.path is not None:
        ok = int((table["error"] == "").sum()) if "error" in table.columns else len(table)
        typer.echo(f"{ok} of {len(table)} studies measured -> {result.path}")
        for col in (c for c in table.columns if c.startswith("applicable_")):
            foreign = int((table[col] == False).sum())  # noqa: E712 - "" (no check) is neither
            if foreign:
                typer.echo(
                    f"{col.removeprefix('applicable_')}: {foreign} of {len(table)} cines do not look like its "
                    "training data (flagged; no headline EF from it)"
                )
    if errors:
        raise SystemExit(1)  # not typer.Exit: main() runs click with standalone_mode=False


def register(app: typer.Typer) -> None:
    app.add_typer(ef_app, name="ef")
