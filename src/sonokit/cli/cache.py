"""`sonokit cache info|clear`: where the preprocessed-frame cache lives and how big it is."""

from __future__ import annotations

import json

import typer

cache_app = typer.Typer(
    help="The preprocessed-frame cache (decoded, model-size frames reused by every epoch, fold and run). "
    "Location: $SONOKIT_CACHE, else ~/.cache/sonokit; SONOKIT_CACHE=off keeps nothing on disk.",
    no_args_is_help=True,
)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


@cache_app.command("info")
def info_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Location, entries and size per preprocessing recipe."""
    from sonokit.data.cache import summarize

    s = summarize()
    if as_json:
        rows = [{k: (str(v) if k == "dir" else v) for k, v in r.items()} for r in s.recipes]
        payload = {
            "root": str(s.root) if s.root else None,
            "entries": s.entries,
            "bytes": s.bytes,
            "recipes": rows,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    if s.root is None:
        typer.echo("cache: off (SONOKIT_CACHE=off): frames are preprocessed in memory in each process")
        return
    typer.echo(f"cache: {s.root}")
    for r in s.recipes:
        typer.echo(f"  {r['recipe']:<36} {r['entries']:>7} files  {_mb(r['bytes']):>12}")
    typer.echo(f"total: {s.entries} files, {_mb(s.bytes)}")


@cache_app.command("clear")
def clear_cmd() -> None:
    """Delete every cached entry (they are rebuilt from the source files when next needed)."""
    from sonokit.data.cache import cache_root, clear

    freed = clear()
    typer.echo(f"cleared {cache_root()}: {_mb(freed)} freed")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
