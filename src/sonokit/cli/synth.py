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
        synth.command(kind, help=None)(_command(kind))
    synth.command("montage")(_montage)
    app.add_typer(synth, name="synth")
