"""What every `... predict` command returns: the CSV it wrote, its rows and one line per unreadable input.

`sonokit predict` (streamed, sonokit.predict.stream), `sonokit ef predict` and `sonokit av predict` each take the
runs their system needs, so their arguments differ; their answer has one shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PredictionFile:
    path: Path | None  # the finished CSV (None when no input could be predicted)
    rows: int = 0  # rows written by this call
    errors: list[str] = field(default_factory=list)  # one line per input that could not be read
    table: Any = (
        None  # the rows as a DataFrame, when the command kept them in memory (echo, the valve cascade)
    )
