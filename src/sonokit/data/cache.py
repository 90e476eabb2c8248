"""Preprocess once: every file's model-size uint8 frames on disk, memory-mapped by every epoch, fold and run.

nnU-Net's preprocessing step is the precedent. A file is decoded once, each frame goes through the run's
preprocessing (a `Recipe`: letterbox, echo sector crop, ...) and the result is stored as one `.npy` per file,
keyed by the file's content (size, mtime and a hash of its first and last 64 KiB) and by the recipe's parameters.
Later readers memory-map it: reading a frame costs a page-cache lookup, not a video decode.

Safety:
- an entry is written to a temporary file and renamed; its JSON sidecar (shape, byte count, CRC-32) is written
  last and is the commit marker, so a killed build leaves no entry that looks complete;
- before first use in a process an entry is checked against its sidecar (size and CRC-32); a truncated or
  corrupt entry is rebuilt, never read;
- builders of the same entry take a file lock, so DataLoader workers, DDP ranks and parallel folds decode a file
  once and never interleave writes.
The sidecar never holds the source path (file names can carry patient identifiers), only shapes and geometry.

Where: `$SONOKIT_CACHE`, else `$XDG_CACHE_HOME/sonokit`, else `~/.cache/sonokit`. `SONOKIT_CACHE=off` keeps
entries in a small in-memory LRU instead (nothing written to disk; each process decodes again). Files that are
read once (prediction on new studies, uploads to the web app) go through `transient()`: preprocessed in memory,
never written to the cache, so new patients' pixels do not pile up in the user's cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

CACHE_ENV = "SONOKIT_CACHE"
#: Bumped when the on-disk layout or a recipe's output changes, so old entries are never read.
LAYOUT_VERSION = 1
_OFF = {"off", "0", "none", "false", "no"}
_PROBE_BYTES = 64 * 2**10

Allocate = Callable[[tuple[int, ...]], np.ndarray]


class Recipe(Protocol):
    """How one file becomes model input. `key` names the preprocessing and every parameter that changes it."""

    @property
    def key(self) -> str: ...

    def build(self, path: Path, allocate: Allocate) -> dict[str, Any]:
        """Decode `path`, write its frames into `allocate(shape)` (uint8) and return JSON-able metadata."""
        ...


_transient_depth = 0


@contextlib.contextmanager
def transient() -> Iterator[None]:
    """Within this block, caches created from the environment keep entries in memory only (see module doc)."""
    global _transient_depth
    _transient_depth += 1
    try:
        yield
    finally:
        _transient_depth -= 1


def cache_root() -> Path | None:
    """The cache folder, or None when caching on disk is switched off (`SONOKIT_CACHE=off`, `transient()`)."""
    if _transient_depth:
        return None
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "sonokit"


def file_fingerprint(path: str | Path) -> str:
    """A content key that changes when the file does: size, mtime and a hash of its first and last 64 KiB."""
    path = Path(path)
    try:
        st = path.stat()
        h = hashlib.blake2b(f"{st.st_size}:{st.st_mtime_ns}".encode(), digest_size=16)
        with open(path, "rb") as f:
            h.update(f.read(_PROBE_BYTES))
            if st.st_size > 2 * _PROBE_BYTES:
                f.seek(-_PROBE_BYTES, os.SEEK_END)
                h.update(f.read(_PROBE_BYTES))
    except FileNotFoundError as err:
        raise InputError("file not found", path) from err
    except IsADirectoryError as err:
        raise InputError("is a folder, not a file", path) from err
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", path) from err
    return h.hexdigest()


def _crc32(array: np.ndarray, chunk: int = 16 * 2**20) -> int:
    flat = array.reshape(-1).view(np.uint8)
    crc = 0
    for start in range(0, flat.size, chunk):
        crc = zlib.crc32(flat[start : start + chunk], crc)
    return crc


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (fcntl; a no-op where it does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@dataclass
class Entry:
    """A file's preprocessed frames (F, ...) uint8 (memory-mapped when on disk) and the recipe's metadata."""

    frames: np.ndarray
    meta: dict[str, Any]


class PreprocessedCache:
    """Frames of files after one recipe, built on first use and memory-mapped afterwards.

    Pickles without its open entries, so each DataLoader worker maps the files itself.
    """

    def __init__(self, recipe: Recipe, root: Path | str | None = "env", max_open: int = 256) -> None:
        """`root`: a folder, None (memory only) or "env" (`cache_root()`, looked up at each new file, so a
        `transient()` block applies to caches made before it)."""
        self.recipe = recipe
        self._root = root if root in ("env", None) else Path(root)  # type: ignore[arg-type]
        self.max_open = max(1, int(max_open))
        self._open: OrderedDict[str, Entry] = OrderedDict()
        self._bytes_in_memory = 0
        self.builds = 0  # entries this process built (decoded) itself
        self.hits = 0  # entries found valid on disk or open already

    # ------------------------------------------------------------------------------------------ public

    @property
    def root(self) -> Path | None:
        return cache_root() if self._root == "env" else self._root  # type: ignore[return-value]

    @property
    def on_disk(self) -> bool:
        return self.root is not None

    @property
    def recipe_dir(self) -> Path | None:
        if self.root is None:
            return None
        digest = hashlib.blake2b(self.recipe.key.encode(), digest_size=8).hexdigest()
        return self.root / f"v{LAYOUT_VERSION}" / digest

    def entry(self, path: str | Path) -> Entry:
        """The preprocessed frames and metadata of `path`, building them when missing, stale or corrupt."""
        key = str(path)
        found = self._open.get(key)
        if found is not None:
            self._open.move_to_end(key)
            self.hits += 1
            return found
        entry = None
        if self.on_disk:
            try:
                entry = self._load_or_build(Path(path))
            except OSError as err:  # read-only or full cache folder: train on, without the disk cache
                log.warning(
                    "cannot use the preprocessed cache in %s (%s); preprocessing in memory instead "
                    "(set SONOKIT_CACHE to a writable folder)",
                    self.root,
                    err.strerror or err,
                )
                self._root = None
        if entry is None:
            entry = self._build_in_memory(Path(path))
        self._remember(key, entry)
        return entry

    def frames(self, path: str | Path) -> np.ndarray:
        return self.entry(path).frames

    def frame(self, path: str | Path, index: int) -> np.ndarray:
        frames = self.entry(path).frames
        if not 0 <= int(index) < len(frames):
            raise InputError(f"frame {index} out of range: the file has {len(frames)} frames", path)
        return frames[int(index)]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        state["_bytes_in_memory"] = 0
        return state

    # ------------------------------------------------------------------------------------------ private

    def _remember(self, key: str, entry: Entry) -> None:
        self._open[key] = entry
        in_memory = not isinstance(entry.frames, np.memmap)
        if in_memory:
            self._bytes_in_memory += entry.frames.nbytes
        # memory maps cost address space only; entries held in memory (cache off, transient) are bounded by bytes
        while len(self._open) > 1 and (
            len(self._open) > self.max_open or self._bytes_in_memory > 512 * 2**20
        ):
            _, old = self._open.popitem(last=False)
            if not isinstance(old.frames, np.memmap):
                self._bytes_in_memory -= old.frames.nbytes

    def _load_or_build(self, path: Path) -> Entry:
        recipe_dir = self.recipe_dir
        fp = file_fingerprint(path)
        npy, sidecar = recipe_dir / fp[:2] / f"{fp}.npy", recipe_dir / fp[:2] / f"{fp}.json"
        lock = npy.parent / ".lock"
        entry = _read_valid(npy, sidecar)
        if entry is not None:
            self.hits += 1
            return entry
        with _locked(lock):
            entry = _read_valid(npy, sidecar)  # another process may have built it while we waited
            if entry is not None:
                self.hits += 1
                return entry
            if not (recipe_dir / "recipe.json").exists():
                _write_json_atomic(
                    recipe_dir / "recipe.json", {"recipe": self.recipe.key, "layout": LAYOUT_VERSION}
                )
            entry = self._build_to_disk(path, npy, sidecar)
        self.builds += 1
        return entry

    def _build_to_disk(self, path: Path, npy: Path, sidecar: Path) -> Entry:
        sidecar.unlink(missing_ok=True)  # the old entry (if any) stops counting before its data is replaced
        fd, tmp_name = tempfile.mkstemp(prefix=".build.", suffix=".npy", dir=npy.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        holder: list[np.ndarray] = []

        def allocate(shape: tuple[int, ...]) -> np.ndarray:
            array = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=tuple(int(s) for s in shape)
            )
            holder.append(array)
            return array

        try:
            meta = self.recipe.build(path, allocate)
            if not holder:
                raise InputError("preprocessing produced no frames", path)
            array = holder[0]
            array.flush()
            crc, shape = _crc32(array), list(array.shape)
            del array, holder[:]
            os.replace(tmp, npy)
            record = {"shape": shape, "bytes": npy.stat().st_size, "crc32": crc, "meta": meta}
            _write_json_atomic(sidecar, record)
        finally:
            tmp.unlink(missing_ok=True)
        entry = _read_valid(npy, sidecar, verify=False)
        if entry is None:  # pragma: no cover - the file system lost what was just written
            raise InputError("the preprocessed cache entry could not be read back", npy)
        return entry

    def _build_in_memory(self, path: Path) -> Entry:
        holder: list[np.ndarray] = []

        def allocate(shape: tuple[int, ...]) -> np.ndarray:
            holder.append(np.empty(tuple(int(s) for s in shape), dtype=np.uint8))
            return holder[-1]

        meta = self.recipe.build(path, allocate)
        if not holder:
            raise InputError("preprocessing produced no frames", path)
        self.builds += 1
        return Entry(holder[0], meta)


_VERIFIED: set[tuple[str, int, int]] = set()  # (entry, size, mtime) whose CRC this process has checked


def _read_valid(npy: Path, sidecar: Path, verify: bool = True) -> Entry | None:
    """The entry if its sidecar and data agree (size, shape and, once per process, CRC-32); else None."""
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        st = npy.stat()
        if st.st_size != int(record["bytes"]):
            return _stale(npy, "size differs from its record")
        frames = np.load(npy, mmap_mode="r", allow_pickle=False)
        if list(frames.shape) != list(record["shape"]) or frames.dtype != np.uint8:
            return _stale(npy, "shape differs from its record")
        stamp = (str(npy), st.st_size, st.st_mtime_ns)
        if verify and stamp not in _VERIFIED:
            if _crc32(frames) != int(record["crc32"]):
                return _stale(npy, "checksum differs from its record")
            _VERIFIED.add(stamp)
        return Entry(frames, record.get("meta", {}))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return _stale(npy, f"unreadable ({err})")


def _stale(npy: Path, why: str) -> None:
    log.warning("preprocessed cache entry %s is %s; rebuilding it", npy.name, why)
    return None


def _write_json_atomic(path: Path, obj: Any) -> None:
    from sonokit.utils import atomic_write_json

    atomic_write_json(path, obj)


# ---------------------------------------------------------------------------------------------- admin


@dataclass
class CacheSummary:
    root: Path | None
    recipes: list[dict[str, Any]]

    @property
    def entries(self) -> int:
        return sum(r["entries"] for r in self.recipes)

    @property
    def bytes(self) -> int:
        return sum(r["bytes"] for r in self.recipes)


def summarize(root: Path | None = None) -> CacheSummary:
    """Entries and bytes per recipe under the cache folder (for `sonokit cache info`)."""
    root = cache_root() if root is None else root
    recipes: list[dict[str, Any]] = []
    if root is None or not root.is_dir():
        return CacheSummary(root, recipes)
    for version_dir in sorted(root.glob("v*")):
        for recipe_dir in sorted(p for p in version_dir.iterdir() if p.is_dir()):
            try:
                name = json.loads((recipe_dir / "recipe.json").read_text(encoding="utf-8"))["recipe"]
            except (OSError, ValueError, KeyError):
                name = "?"
            entries = list(recipe_dir.glob("*/*.json"))
            size = sum(f.stat().st_size for f in recipe_dir.rglob("*") if f.is_file())
            recipes.append(
                {
                    "layout": version_dir.name,
                    "recipe": name,
                    "entries": len(entries),
                    "bytes": size,
                    "dir": recipe_dir,
                }
            )
    return CacheSummary(root, recipes)


def clear(root: Path | None = None) -> int:
    """Delete every cache entry (only sonokit's own `v*` folders); returns the bytes freed."""
    summary = summarize(root)
    if summary.root is None:
        return 0
    for version_dir in summary.root.glob("v*"):
        if version_dir.is_dir():
            shutil.rmtree(version_dir, ignore_errors=True)
    return summary.bytes
