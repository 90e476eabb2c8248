"""Commands that touch scanner files: info, convert, anonymize."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the ingest commands to the root app (filled in by the ingest work)."""
