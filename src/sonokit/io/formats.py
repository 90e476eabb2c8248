"""Which files sonokit can read, and finding them in folders.

The kind of a file is decided by its content first (the `DICM` marker at byte 128, which many scanners write
into files without an extension) and by its extension second.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sonokit.errors import InputError

DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".dic"})
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".webm", ".mov"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
SUPPORTED_EXTENSIONS = DICOM_EXTENSIONS | VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
KINDS = ("dicom", "video", "image")

# Files that are never images even when they carry the DICOM marker or sit in a study folder.
_NEVER = frozenset({"dicomdir"})


def has_dicom_marker(path: Path) -> bool:
    """True when bytes 128-131 are `DICM` (the DICOM Part 10 file preamble)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def file_kind(path: str | Path) -> str | None:
    """ "dicom", "video", "image", or None when sonokit does not read this file."""
    path = Path(path)
    if path.name.lower() in _NEVER:
        return None
    suffix = path.suffix.lower()
    if suffix in DICOM_EXTENSIONS or has_dicom_marker(path):
        return "dicom"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None


def _hidden(path: Path, root: Path) -> bool:
    # Skips dot-files and dot-folders: version control, macOS metadata and sonokit's own temporary files.
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_inputs(paths: Iterable[str | Path], kinds: Iterable[str] = KINDS) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of readable files of the given kinds.

    Files named explicitly are kept whatever their kind, so the user gets a one-line error for each file that
    cannot be read rather than a silent skip; folders contribute only files of `kinds`, including DICOM files
    without an extension. Raises InputError for a path that does not exist or when nothing readable is found.
    """
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise InputError(f"unknown input kinds {sorted(unknown)}; choose from {list(KINDS)}")
    found: set[Path] = set()
    given: list[Path] = []
    for raw in paths:
        path = Path(raw)
        given.append(path)
        if path.is_dir():
            for child in path.rglob("*"):
                if child.is_file() and not _hidden(child, path) and file_kind(child) in kinds:
                    found.add(child)
        elif path.is_file():
            found.add(path)
        else:
            raise InputError("no such file or folder", path)
    if not found:
        names = ", ".join(str(p) for p in given) or "(no paths given)"
        wanted = "/".join(kinds)
        raise InputError(f"no supported {wanted} files found in {names}")
    return sorted(found)
