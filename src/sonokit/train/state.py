"""Where a training run stands: the epoch, the best metric so far, patience, the log; and what callbacks see.

Kept apart from the engine so the checkpoint's contents are defined in one place (saved by `to_checkpoint`, read
back by `from_checkpoint`) and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_COLUMNS = ["epoch", "phase", "loss", "metric", "seconds", "lr"]


@dataclass
class EpochEnd:
    """What a callback sees after each epoch (after the checkpoint is on disk)."""

    epoch: int  # completed epochs, 1-based
    epochs: int
    train_loss: float
    val_loss: float
    metric: float
    best_metric: float | None
    improved: bool
    run_dir: Path


Callback = Callable[[EpochEnd], None]


def better(value: float, best: float | None, mode: str) -> bool:
    """Whether `value` beats `best` ("max" or "min"); a non-finite value never does, anything beats None."""
    if best is None:
        return True
    if not math.isfinite(value):
        return False
    return value > best if mode == "max" else value < best


@dataclass
class RunState:
    epoch: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, phase: str, loss: float, metric: float, seconds: float, lr: float) -> None:
        """One row of log.csv for the epoch just completed."""
        self.history.append(
            {
                "epoch": self.epoch,
                "phase": phase,
                "loss": loss,
                "metric": metric,
                "seconds": round(seconds, 3),
                "lr": lr,
            }
        )

    def update_best(self, metric: float, mode: str) -> bool:
        """Count the epoch's validation metric against the best so far; True when it improved."""
        improved = better(metric, self.best_metric, mode)
        if improved:
            self.best_metric, self.best_epoch, self.bad_epochs = float(metric), self.epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "finished": self.finished,
            "history": self.history,
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> RunState:
        return cls(
            epoch=int(ckpt["epoch"]),
            best_metric=ckpt["best_metric"],
            best_epoch=int(ckpt["best_epoch"]),
            bad_epochs=int(ckpt["bad_epochs"]),
            finished=bool(ckpt.get("finished", False)),
            history=list(ckpt["history"]),
        )
