"""The demo's progress display: which step runs, how long it has taken, and about how long is left.

Each step carries an estimate of its share of the work; the time left is the elapsed time scaled by the share still
to do, so the estimate corrects itself as the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sonokit.utils import get_logger

log = get_logger(__name__)
T = TypeVar("T")


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclass
class DemoProgress:
    """Announces every step on stderr (log INFO) with elapsed and remaining time; records each step's duration."""

    total_weight: float
    done_weight: float = 0.0
    start: float = field(default_factory=time.perf_counter)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def run(self, label: str, weight: float, fn: Callable[[], T]) -> T:
        elapsed = time.perf_counter() - self.start
        if self.done_weight > 0:
            left = elapsed / self.done_weight * (self.total_weight - self.done_weight)
            eta = f", about {_clock(left)} left"
        else:
            eta = ""
        percent = 100.0 * self.done_weight / self.total_weight if self.total_weight else 0.0
        log.info("[%3.0f%%] %s (elapsed %s%s)", percent, label, _clock(elapsed), eta)
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings.append((label, time.perf_counter() - t0))
            self.done_weight += weight

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
