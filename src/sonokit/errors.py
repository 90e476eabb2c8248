"""Errors that reach the user as one line naming the file and the problem.

Library code raises these; the CLI turns them into `error: <message>` and a non-zero exit code.
"""

from __future__ import annotations

from pathlib import Path


class SonokitError(Exception):
    """Base class for every error sonokit reports to a user."""


class InputError(SonokitError):
    """A file, folder, table or argument the user gave cannot be used.

    The message always names the offending path when there is one, so a user with a folder of a thousand
    studies knows which file to look at.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        from sonokit.utils.paths import printable

        self.path = Path(path) if path is not None else None
        # printable: a name that is not UTF-8 or holds a newline must not break the one-line message
        super().__init__(f"{printable(self.path)}: {message}" if self.path is not None else message)


class ModelError(SonokitError):
    """A model name, weights file or run folder cannot be used."""
