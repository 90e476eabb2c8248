"""Write files so that a killed process never leaves a half-written result behind.

Everything is written to a temporary file in the same folder and renamed into place (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sonokit.utils.paths import is_utf8, temp_stem

# atomic_path's temporary names: "." + temp_stem (at most 40 of [A-Za-z0-9_.-]) + "." + mkstemp's 8 random
# characters + the final suffix (at most 16 characters, no "/").
_TEMP_NAME = re.compile(r"\.[A-Za-z0-9_.-]{1,40}\.[a-z0-9_]{8}(\.[^/]{1,15})?")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block finishes without error.

    The temporary name keeps the final suffix (or `suffix`) because some writers (OpenCV, matplotlib) pick the
    format from the extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An ASCII temporary name: a 254-byte final name still fits, and OpenCV can take a name that is not UTF-8.
    end = suffix or path.suffix
    fd, tmp = tempfile.mkstemp(
        prefix=f".{temp_stem(path.stem)}.",
        suffix=end if is_utf8(end) and len(end) <= 16 else "",
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; a result file should have the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temporary files atomic_path left in `folder` when its process was killed (SIGKILL skips
    the clean-up); the number removed. Call it only where no other process writes at the same time (a run
    folder when its run starts): a live writer's temporary file has the same shape."""
    removed = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            if _TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(df: Any, path: str | Path, **kwargs: Any) -> Path:
    """Write a pandas DataFrame to CSV atomically.

    File names that are not UTF-8 are written back as their original bytes (surrogateescape), so a path
    column still names the file exactly; read such a CSV with encoding_errors="surrogateescape".
    """
    kwargs.setdefault("errors", "surrogateescape")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)
    return Path(path)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the usual things that json cannot serialise
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
