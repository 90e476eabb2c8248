"""`sonokit demo`: option parsing only; the work is in sonokit.demo."""

from __future__ import annotations

from pathlib import Path

import typer

_DEFAULT_HC18 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hc18"


def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for data, runs and report.html."),
    quick: bool = typer.Option(False, "--quick", help="Tiny data and 1-3 epochs: about 2 minutes."),
    systems: str = typer.Option(
        "echo,av,quality,lus,fetal", "--systems", help="Comma-separated systems to run."
    ),
    seed: int = typer.Option(0, "--seed"),
    hc18: Path | None = typer.Option(
        None,
        "--hc18",
        help="Real HC18 folder for the quality system (default: ../shared/data/hc18 when present).",
    ),
) -> None:
    """Run every system end to end on simulated data and write DIR/report.html and DIR/report.md."""
    from sonokit.demo.runner import parse_systems, run_demo

    chosen = parse_systems(systems)
    report, sections = run_demo(out, quick=quick, systems=chosen, seed=seed, hc18=hc18 or _DEFAULT_HC18)
    failed = [s.key for s in sections if s.error]
    typer.echo(f"report: {report}")
    if failed:
        typer.echo(f"error: these systems failed (see the report): {', '.join(failed)}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
