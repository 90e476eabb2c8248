"""File names as a hostile file system hands them over: any bytes but `/` and NUL, up to 255 bytes.

Python gives names that are not UTF-8 as str with lone surrogates (PEP 383). Printing such a str to a UTF-8
stream raises UnicodeEncodeError, and OpenCV converts its path argument to UTF-8 in C++ and crashes the process
(segfault, OpenCV 5.1). So:

- `printable(path)` is the one way a name reaches a message: undecodable bytes become `\\xNN`, control
  characters (a newline in a name would split the one-line error) are escaped.
- `opencv_path(path)` hands OpenCV a plain ASCII name (a symlink in a private temporary folder) when the real
  name is not valid UTF-8.
- `temp_stem(stem)` is a short ASCII stem for temporary files, so a 254-byte name still fits with its suffix.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UNSAFE_TEMP = re.compile(r"[^A-Za-z0-9_.-]+")


def printable(path: str | bytes | os.PathLike | None) -> str:
    """One printable line for a file name, whatever bytes it holds."""
    if path is None:
        return ""
    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte under surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF or not ch.isprintable():
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def is_utf8(path: str | os.PathLike) -> bool:
    """True when the name can be passed to libraries that need UTF-8 (no surrogate-escaped bytes)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def temp_stem(stem: str, limit: int = 40) -> str:
    """An ASCII stem for a temporary file beside `stem`'s file: recognisable, short, safe for every writer."""
    return _UNSAFE_TEMP.sub("_", stem)[:limit] or "tmp"


@contextlib.contextmanager
def opencv_path(path: str | os.PathLike) -> Iterator[str]:
    """A name OpenCV can take for `path`: the path itself, or an ASCII symlink to it while the block runs.

    The symlink is removed on exit; a VideoCapture or VideoWriter opened inside the block keeps its open file.
    """
    path = Path(path)
    if is_utf8(path):
        yield str(path)
        return
    folder = tempfile.mkdtemp(prefix="sonokit-name-")
    try:
        link = Path(folder) / f"file{temp_stem(path.suffix, 12) if is_utf8(path.suffix) else ''}"
        os.symlink(os.path.abspath(path), link)
        yield str(link)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
