"""Logging and progress bars. Library code logs; it never prints. Never log patient identifiers."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_QUIET = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("sonokit") else f"sonokit.{name}")


def set_quiet(quiet: bool) -> None:
    """Switch progress bars off for the whole process (the CLI's --quiet)."""
    global _QUIET
    _QUIET = quiet


def progress_enabled() -> bool:
    return not _QUIET and sys.stderr.isatty() and os.environ.get("SONOKIT_NO_PROGRESS") is None


def progress(
    iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """A tqdm bar on stderr when it is a terminal; a plain iterator otherwise (CI logs stay readable)."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
