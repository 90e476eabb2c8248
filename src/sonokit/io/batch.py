"""Run one step over many files: a bad file becomes one error line, the others still get processed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sonokit.errors import SonokitError
from sonokit.utils.logs import get_logger, progress
from sonokit.utils.paths import printable

log = get_logger(__name__)
T = TypeVar("T")


@dataclass
class BatchResult:
    """What a batch produced: one result per file that worked, one message per file that did not."""

    results: list[tuple[Path, Any]] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)
    mapping: Path | None = None  # a file the user must keep (anonymize's original names), when there is one

    @property
    def ok(self) -> bool:
        return not self.errors


def error_line(path: Path, err: BaseException) -> str:
    """`<path>: <reason>` on one line; sonokit errors already name their file."""
    name = printable(path)
    if isinstance(err, SonokitError):
        text = str(err)
        return text if name in text else f"{name}: {text}"
    if isinstance(err, OSError):  # a full disk, a read-only folder: the system's reason and the file it hit
        where = f" ({printable(err.filename)})" if err.filename and str(err.filename) != str(path) else ""
        return f"{name}: {err.strerror or type(err).__name__}{where}"
    first = printable((str(err).strip().splitlines() or [""])[0][:200])
    return f"{name}: unexpected {type(err).__name__}: {first}"


def run_batch(
    items: Iterable[T],
    step: Callable[[T], Any],
    path_of: Callable[[T], Path],
    desc: str,
    out: BatchResult | None = None,
) -> BatchResult:
    """Apply `step` to every item with a progress bar; failures are collected (a bug is logged with traceback).

    Results accumulate in `out` as they come, so a caller can still use them if the run is interrupted.
    """
    items = list(items)
    out = out if out is not None else BatchResult()
    for item in progress(items, desc=desc, total=len(items), unit="file"):
        path = path_of(item)
        try:
            out.results.append((path, step(item)))
        except SonokitError as err:
            out.errors.append((path, error_line(path, err)))
        except Exception as err:  # a decoder or writer bug must not stop the other files
            log.debug("unexpected error on %s", path, exc_info=True)
            out.errors.append((path, error_line(path, err)))
    return out
