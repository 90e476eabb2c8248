"""`sonokit models list`: every registered network (image backbones, video, segmentation, landmarks), its kind,
family and size; `sonokit models shipped`: the backbones inside the package and their cards."""

from __future__ import annotations

import json

import typer

models_app = typer.Typer(
    help="Model registry: every network a task can build, by kind.", no_args_is_help=True
)


@models_app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    kind: str | None = typer.Option(
        None, "--kind", help="Only this kind: image, video, segmentation or landmarks."
    ),
) -> None:
    """List every registered network. Parameters: image backbones for 1 class, 1 input channel and the linear
    head; the other kinds as their task builds them by default (3 input channels)."""
    from sonokit.models import KINDS, list_models
    from sonokit.models.heads import HEADS

    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(
            f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}", param_hint="--kind"
        )
    rows = list_models(kind)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = ("name", "kind", "family", "params", "default size", "description")
    table = [
        (
            r["name"],
            r["kind"],
            r["family"],
            f"{r['params'] / 1e6:.2f}M",
            str(r["default_img_size"]),
            r["description"],
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    for line in (header, tuple("-" * w for w in widths), *table):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    typer.echo(f"\nheads (image models): {', '.join(HEADS)}")


@models_app.command("shipped")
def shipped_cmd(as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON.")) -> None:
    """The backbones inside the package (what `train --init auto` starts from): file, data, licences, method."""
    from sonokit.models.shipped import SHIPPED, shipped_backbone, shipped_card

    cards = []
    for (name, chans), file in SHIPPED.items():
        path = shipped_backbone(name, chans)
        card = shipped_card(path) if path else {}
        cards.append({"model": name, "channels": chans, "file": file, "present": path is not None, **card})
    if as_json:
        typer.echo(json.dumps(cards, indent=2))
        return
    for c in cards:
        state = "" if c["present"] else "  (missing from this install)"
        typer.echo(
            f"{c['file']}: {c['model']}, {c['channels']} channel(s), input {c.get('input', {}).get('size')} px{state}"
        )
        for key in ("method", "licences", "use"):
            if c.get(key):
                typer.echo(f"  {key}: {c[key]}")
        for d in c.get("data", []):
            typer.echo(f"  data: {d['set']}: {d['labels']}; {d['licence']}; cite {d['cite']}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
