"""`sonokit app`: option parsing only; the server command is built in sonokit.app.launch."""

from __future__ import annotations

from pathlib import Path

import typer


def app_cmd(
    runs: Path = typer.Option(
        Path("runs"), "--runs", help="Folder searched for trained runs (model_card.json)."
    ),
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to bind: 127.0.0.1 keeps the app on this machine; 0.0.0.0 exposes it.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    max_upload_mb: int = typer.Option(500, "--max-upload-mb", min=1, help="Largest upload accepted (MB)."),
) -> None:
    """Web app: upload studies (DICOM/AVI/MP4/PNG/JPG), see every model's answer with its evidence.

    Research software, not for clinical use. Uploads are analysed in a private temporary folder and deleted.
    """
    from sonokit.app.launch import launch

    launch(runs, port=port, host=host, device=device, max_upload_mb=max_upload_mb)


def register(app: typer.Typer) -> None:
    app.command("app")(app_cmd)
