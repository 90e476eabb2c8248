"""Shared pieces of the dataset writers: per-case random streams and all-or-nothing output folders."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sonokit.errors import InputError


def case_rng(seed: int, kind: int, index: int, stream: int = 0) -> np.random.Generator:
    """RNG of item `index` of a phantom `kind`: a function of (seed, kind, index, stream) only.

    Cases do not share a stream, so a dataset of n cases is the first n cases of any larger one.
    """
    if int(seed) < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(kind), int(index), int(stream)]))


def check_args(n: int, size: int, seed: int = 0, min_size: int = 32, max_size: int = 1024) -> None:
    """Reject bad arguments before any folder is created."""
    if int(seed) < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed}")
    if int(n) < 1:
        raise InputError(f"n must be at least 1, got {n}")
    if not (min_size <= int(size) <= max_size):
        raise InputError(f"size must be between {min_size} and {max_size} pixels, got {size}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; it becomes `out` only when the block succeeds.

    An interrupted run leaves no half-written dataset (only a hidden temp folder that is removed on error).
    An existing non-empty `out` is an error unless `overwrite`.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a folder", out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError("output folder exists and is not empty (use --overwrite to replace it)", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the dataset should look like any folder
    try:
        yield tmp
        if out.exists():
            trash = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
