"""Progress of long loops: a tqdm bar on a terminal; without one (nohup, CI, a log file) a line every so often."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from sonokit.utils import progress
from sonokit.utils.logs import heartbeat_seconds, set_quiet


@pytest.fixture
def no_terminal(monkeypatch):
    """stderr is not a terminal and progress is not switched off: the case of a training run in a log file."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delenv("SONOKIT_NO_PROGRESS", raising=False)


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sonokit.progress"]


def test_heartbeat_logs_count_rate_and_time_left(no_terminal, caplog) -> None:
    caplog.set_level(logging.INFO, logger="sonokit")
    assert list(progress(range(4), desc="epoch 1/3", total=4, unit="batch", heartbeat=0.0)) == [0, 1, 2, 3]
    lines = _lines(caplog)
    assert len(lines) == 4  # heartbeat 0: a line after every batch
    assert lines[1].startswith("epoch 1/3: batch 2/4 (50%), ") and "batch/s, ~" in lines[1]
    assert lines[3].startswith("epoch 1/3: batch 4/4 (100%)") and lines[3].endswith("~0 s left")


def test_short_loops_quiet_runs_and_no_heartbeat_log_nothing(no_terminal, caplog, monkeypatch) -> None:
    caplog.set_level(logging.INFO, logger="sonokit")
    assert list(progress(range(50), desc="x", total=50, heartbeat=3600.0)) == list(range(50))
    assert list(progress(range(5), desc="x", total=5)) == list(range(5))  # callers without a heartbeat
    set_quiet(True)
    try:
        list(progress(range(5), desc="x", total=5, heartbeat=0.0))
    finally:
        set_quiet(False)
    monkeypatch.setenv("SONOKIT_NO_PROGRESS", "1")
    list(progress(range(5), desc="x", total=5, heartbeat=0.0))
    assert _lines(caplog) == []


def test_heartbeat_interval_from_the_environment(monkeypatch, caplog) -> None:
    monkeypatch.delenv("SONOKIT_PROGRESS_EVERY", raising=False)
    assert heartbeat_seconds() == 60.0
    monkeypatch.setenv("SONOKIT_PROGRESS_EVERY", "5")
    assert heartbeat_seconds() == 5.0
    monkeypatch.setenv("SONOKIT_PROGRESS_EVERY", "often")
    assert heartbeat_seconds() == 60.0
    assert "SONOKIT_PROGRESS_EVERY='often' is not a number of seconds" in caplog.text
