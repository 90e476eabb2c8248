"""Small helpers shared by every module: atomic writes, seeding, logging and progress bars."""

from sonokit.utils.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    write_csv,
)
from sonokit.utils.logs import get_logger, progress
from sonokit.utils.seed import seed_everything

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "get_logger",
    "progress",
    "seed_everything",
    "write_csv",
]
