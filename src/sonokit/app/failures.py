"""How a failure reaches the page: one line, naming the upload, never the temporary path it was written to."""

from __future__ import annotations

from pathlib import Path

from sonokit.errors import SonokitError

#: what a system may raise on a readable but unsuitable file (or a run that cannot load); caught per system so
#: the others still run
SYSTEM_ERRORS: tuple[type[BaseException], ...] = (
    SonokitError,
    OSError,
    ValueError,
    RuntimeError,
    IndexError,
    KeyError,
)


def one_line(err: BaseException) -> str:
    """The first line of the message (the type's name when empty), at most 400 characters."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:400]


def clean(message: str, path: Path, name: str) -> str:
    """The message with the temporary path (and folder) replaced by the upload's name."""
    message = message.replace(str(path), name).replace(str(path.parent) + "/", "")
    return message.replace(path.name, name)
