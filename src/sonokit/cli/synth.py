"""`sonokit synth`: write simulated datasets in the real datasets' formats, and draw contact sheets of them."""

from __future__ import annotations

from pathlib import Path

import typer

SIZES = {"echo": 112, "psax": 128, "lus": 128, "fetal-planes": 160}  # mirrors sonokit.synth.DEFAULT_SIZE
HELP = {
    "echo": "Apical-4-chamber cines with known LV volumes: an EchoNet-Dynamic folder (Videos/, FileList.csv, "
    "VolumeTracings.csv).",
    "psax": "Parasternal short-axis frames of the aortic valve: images/, boxes.csv, labels.csv (calcified 0/1).",
    "lus": "Lung cines scored 0-3: videos/ and lus.csv (path, label, group, b_line_fraction).",
    "fetal-planes": "Fetal standard planes in the FETAL_PLANES_DB layout (Images/, FETAL_PLANES_DB_data.csv).",
}


def _command(kind: str):
    def run(
        out: Path = typer.Option(..., "--out", "-o", help="Folder to create (written atomically)."),
        n: int = typer.Option(None, "--n", help="Number of items (videos or images)."),
        seed: int = typer.Option(0, "--seed", help="Random seed; item i depends only on (seed, i)."),
        size: int = typer.Option(SIZES[kind], "--size", help="Output width and height in pixels."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty folder."),
    ) -> None:
        from sonokit.synth import make_dataset

        path = make_dataset(kind, out, n=n, seed=seed, size=size, overwrite=overwrite)
        typer.echo(str(path))

    run.__doc__ = HELP[kind] + " Simulated data is for checking pipelines, not for clinical claims."
    return run


def _echo_command():
    def run(
        out: Path = typer.Option(..., "--out", "-o", help="Folder to create (written atomically)."),
        n: int = typer.Option(None, "--n", help="Number of videos."),
        seed: int = typer.Option(
            0, "--seed", help="Random seed; video i depends only on (seed, i) and the options."
        ),
        size: int = typer.Option(SIZES["echo"], "--size", help="Output width and height in pixels."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty folder."),
        realism: str = typer.Option(
            "full",
            "--realism",
            help="full (default): spline/bullet chambers, papillary muscles, dark surround, clutter, drop-out, "
            "shadows, TGC, per-case speckle size, sector, depth, zoom, rotation and frame rate (for models meant "
            "for real cines); basic: the original geometric phantom.",
        ),
        convention: str = typer.Option(
            "right",
            "--convention",
            help="Screen side of the LV: right (EchoNet, Mayo), left (mirrored), or both (drawn per video). "
            "Tracings move with the image.",
        ),
        fps_min: float = typer.Option(20.0, "--fps-min", help="Lowest frame rate drawn per video (full)."),
        fps_max: float = typer.Option(90.0, "--fps-max", help="Highest frame rate drawn per video (full)."),
        max_rotation: float = typer.Option(
            5.0, "--max-rotation", help="Largest rotation of the heart about the probe, degrees (full)."
        ),
    ) -> None:
        from sonokit.synth import make_dataset

        path = make_dataset(
            "echo",
            out,
            n=n,
            seed=seed,
            size=size,
            overwrite=overwrite,
            realism=realism,
            convention=convention,
            fps_range=(fps_min, fps_max),
            max_rotation_deg=max_rotation,
        )
        typer.echo(str(path))

    run.__doc__ = HELP["echo"] + " Simulated data is for checking pipelines, not for clinical claims."
    return run


def _montage(
    source: str = typer.Argument(..., help="A dataset folder, or a phantom name to simulate a few items."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    n: int = typer.Option(None, "--n", help="Items to draw."),
    seed: int = typer.Option(0, "--seed", help="Seed when simulating."),
) -> None:
    """Draw a contact sheet of a dataset with its ground truth (contours, boxes, scores, planes)."""
    from sonokit.synth import montage

    typer.echo(str(montage(source, out, n=n, seed=seed)))


def register(app: typer.Typer) -> None:
    """Attach `sonokit synth <kind>` commands."""
    synth = typer.Typer(
        help="Simulate ultrasound datasets with exact ground truth, in the real datasets' file formats.",
        no_args_is_help=True,
    )
    for kind in SIZES:
        synth.command(kind, help=None)(_echo_command() if kind == "echo" else _command(kind))
    synth.command("montage")(_montage)
    app.add_typer(synth, name="synth")
