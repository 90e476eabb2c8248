"""`sonokit export RUN --format onnx`: option parsing only; the work is in sonokit.export."""

from __future__ import annotations

from pathlib import Path

import typer


def export_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `sonokit train`."),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    out: Path | None = typer.Option(None, "--out", help="File to write (default RUN/model.onnx)."),
    exporter: str = typer.Option(
        "auto",
        "--exporter",
        help="auto (torch.export-based, legacy TorchScript if that fails), dynamo, legacy.",
    ),
    tol: float = typer.Option(
        1e-4, "--tol", min=0.0, help="Largest allowed |onnxruntime - torch| difference."
    ),
) -> None:
    """Export a run's model to one ONNX file (dynamic batch), verified against PyTorch on random inputs.

    `sonokit predict` then runs it with onnxruntime (`--backend auto`, the default, picks model.onnx when it
    sits in the run folder and matches the weights).
    """
    from sonokit.errors import InputError
    from sonokit.export import export_run

    if fmt.lower() != "onnx":
        raise InputError(f"unknown export format {fmt!r}; supported: onnx")
    if exporter not in ("auto", "dynamo", "legacy"):
        raise InputError(f"unknown exporter {exporter!r}; choose auto, dynamo or legacy")
    result = export_run(run, out, exporter=exporter, tol=tol)  # type: ignore[arg-type]
    diffs = ", ".join(f"batch {b}: {d:.2e}" for b, d in result.max_abs_diff.items())
    typer.echo(
        f"wrote {result.path} ({result.exporter} exporter, opset {result.opset}, input (batch, "
        f"{', '.join(map(str, result.input_shape))}), {result.seconds:.1f}s)"
    )
    typer.echo(f"max |onnxruntime - torch|: {diffs}")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
