"""Logging and progress bars. Library code logs; it never prints. Never log patient identifiers."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_QUIET = False
# Without a terminal (nohup, CI, a log file) a long loop given a heartbeat logs a line this often, in seconds.
HEARTBEAT_ENV, HEARTBEAT_DEFAULT = "SONOKIT_PROGRESS_EVERY", 60.0


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("sonokit") else f"sonokit.{name}")


def set_quiet(quiet: bool) -> None:
    """Switch progress bars off for the whole process (the CLI's --quiet)."""
    global _QUIET
    _QUIET = quiet


def quiet_command(quiet: bool) -> None:
    """A command's own --quiet: no progress bars and warnings only from sonokit's loggers (no-op when False)."""
    if quiet:
        set_quiet(True)
        logging.getLogger("sonokit").setLevel(logging.WARNING)


def progress_enabled() -> bool:
    return not _QUIET and sys.stderr.isatty() and os.environ.get("SONOKIT_NO_PROGRESS") is None


def heartbeat_seconds() -> float:
    """Seconds between progress lines of a loop without a terminal: $SONOKIT_PROGRESS_EVERY, else 60."""
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return HEARTBEAT_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        get_logger("progress").warning(
            "%s=%r is not a number of seconds >= 0; using %g", HEARTBEAT_ENV, raw, HEARTBEAT_DEFAULT
        )
        return HEARTBEAT_DEFAULT
    return value


def progress(
    iterable: Iterable[T],
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    heartbeat: float | None = None,
) -> Iterator[T]:
    """A tqdm bar on stderr when it is a terminal; a plain iterator otherwise (CI logs stay readable).

    With `heartbeat` (seconds) a loop without a terminal logs one INFO line each time that much time has passed
    (count, rate, time left), so a long epoch in a log file shows it is moving; loops shorter than `heartbeat`
    log nothing. --quiet and SONOKIT_NO_PROGRESS switch these lines off too."""
    if progress_enabled():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
    elif heartbeat is None or _QUIET or os.environ.get("SONOKIT_NO_PROGRESS") is not None:
        yield from iterable
    else:
        yield from _heartbeat(iterable, desc, total, unit, heartbeat)


def _heartbeat(iterable: Iterable[T], desc: str, total: int | None, unit: str, every: float) -> Iterator[T]:
    log = get_logger("progress")
    start = time.monotonic()
    due = start + every
    for done, item in enumerate(iterable, 1):
        yield item
        now = time.monotonic()
        if now < due:
            continue
        due = now + every
        rate = done / max(now - start, 1e-9)
        if total:
            left = max(total - done, 0) / rate
            log.info(
                "%s: %s %d/%d (%.0f%%), %.2f %s/s, ~%s left",
                desc, unit, done, total, 100.0 * done / total, rate, unit, _duration(left),
            )  # fmt: skip
        else:
            log.info("%s: %s %d, %.2f %s/s", desc, unit, done, rate, unit)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
