"""Fixtures shared by the whole suite. Real data lives in ../shared; tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SONOKIT_SHARED", ROOT.parent / "shared"))

os.environ.setdefault("SONOKIT_NO_PROGRESS", "1")
if "SONOKIT_CACHE" not in os.environ:  # the suite's preprocessed cache never touches the user's own
    import tempfile

    os.environ["SONOKIT_CACHE"] = tempfile.mkdtemp(prefix="sonokit-test-cache-")


def pytest_configure(config: pytest.Config) -> None:
    # Two xdist workers on two cores: one torch thread each avoids oversubscription.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def shared_data(name: str, inside: str) -> Path:
    """A real data set in ../shared/data; the test skips (with the reason) when ../shared is not beside the repo."""
    path = SHARED / "data" / name
    if not (path / inside).is_dir():
        pytest.skip(f"real {name} data not found at {path} (../shared is absent)")
    return path


@pytest.fixture(scope="session")
def hc18_dir() -> Path:
    """The real HC18 fetal head subset."""
    return shared_data("hc18", "images")


@pytest.fixture(scope="session")
def ybr_dicom() -> Path:
    """The real 30-frame four-chamber echo cine (JPEG Baseline YBR_FULL_422) shipped inside the pydicom wheel."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("examples_ybr_color.dcm"))


@pytest.fixture(autouse=True)
def _restore_quiet_state():
    """A CLI command run in-process with --quiet (typer's CliRunner) switches progress off for the whole process
    and sets sonokit's log level; put both back so the next test in this worker sees the defaults."""
    import logging

    from sonokit.utils import logs

    quiet, level = logs._QUIET, logging.getLogger("sonokit").level
    yield
    logs.set_quiet(quiet)
    logging.getLogger("sonokit").setLevel(level)
