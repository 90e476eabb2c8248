"""`sonokit models list`: the registered backbones, their families and sizes."""

from __future__ import annotations

import json

import typer

models_app = typer.Typer(help="Model registry: backbones and heads.", no_args_is_help=True)


@models_app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """List every registered backbone (parameter counts for 1 class, 1 input channel, linear head)."""
    from sonokit.models import list_models
    from sonokit.models.heads import HEADS

    rows = list_models()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = ("name", "family", "params", "default size", "description")
    table = [
        (r["name"], r["family"], f"{r['params'] / 1e6:.2f}M", str(r["default_img_size"]), r["description"])
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    for line in (header, tuple("-" * w for w in widths), *table):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    typer.echo(f"\nheads: {', '.join(HEADS)}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
