"""Start the Streamlit server for the app: headless, bound to localhost unless told otherwise, no usage stats."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sonokit.errors import InputError

SCRIPT = Path(__file__).with_name("main.py")
MAX_UPLOAD_MB = 500


def streamlit_command(
    runs: str | Path,
    port: int = 8501,
    host: str = "127.0.0.1",
    device: str = "auto",
    max_upload_mb: int = MAX_UPLOAD_MB,
) -> list[str]:
    """The `streamlit run` command line (the script reads --runs and --device after the `--`)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(SCRIPT),
        "--server.port", str(int(port)),
        "--server.address", host,
        "--server.headless", "true",
        "--server.maxUploadSize", str(int(max_upload_mb)),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--", "--runs", str(runs), "--device", device,
    ]  # fmt: skip


def launch(
    runs: str | Path,
    port: int = 8501,
    host: str = "127.0.0.1",
    device: str = "auto",
    max_upload_mb: int = MAX_UPLOAD_MB,
) -> None:
    """Replace this process by the Streamlit server (so signals reach it directly); returns only on error."""
    try:
        import streamlit  # noqa: F401
    except ImportError as err:
        raise InputError("the app needs Streamlit: pip install 'sonokit[app]'") from err
    runs = Path(runs).expanduser()
    if not runs.is_dir():
        raise InputError("runs folder not found (train a model first, or pass --runs DIR)", runs)
    if not 0 < int(port) < 65536:
        raise InputError(f"--port must be 1-65535, got {port}")
    cmd = streamlit_command(runs.resolve(), port, host, device, max_upload_mb)
    env = {**os.environ, "SONOKIT_RUNS": str(runs.resolve()), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    os.execvpe(cmd[0], cmd, env)
