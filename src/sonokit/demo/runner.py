"""`sonokit demo`: every system end to end on data simulated on the spot, into one report.

Each system is a function that takes the shared context and returns a report Section. A system that fails is
reported in its section (with the error) and the others still run; the command then exits non-zero.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sonokit.demo.progress import DemoProgress
from sonokit.demo.report import Section, write_reports
from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

SYSTEMS = ("echo", "av", "quality", "lus", "fetal")


@dataclass(frozen=True)
class Scale:
    """How much data and training each system gets: `quick` for the test (about 2 minutes), `full` for make demo."""

    name: str
    n: dict[str, int]
    size: dict[str, int]
    epochs: dict[str, int]
    n_boot: int


QUICK = Scale(
    name="quick",
    n={"echo": 24, "psax": 48, "lus": 24, "fetal": 60, "quality": 24},
    size={"echo": 112, "psax": 96, "lus": 64, "fetal": 64, "quality": 64},
    epochs={"echo": 1, "av-detect": 2, "av-calcification": 2, "lus": 2, "fetal": 3, "quality": 2},
    n_boot=200,
)
FULL = Scale(
    name="full",
    n={"echo": 160, "psax": 240, "lus": 96, "fetal": 360, "quality": 200},
    size={"echo": 112, "psax": 128, "lus": 96, "fetal": 96, "quality": 96},
    epochs={"echo": 8, "av-detect": 12, "av-calcification": 10, "lus": 10, "fetal": 12, "quality": 8},
    n_boot=1000,
)


@dataclass
class DemoContext:
    out: Path
    scale: Scale
    seed: int
    progress: DemoProgress
    hc18: Path | None

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    def step(self, label: str, weight: float, fn: Callable):
        """Run one step; its share of the estimate is its measured seconds (STEP_SECONDS), else `weight`
        minutes (a step added since the table was measured)."""
        return self.progress.run(label, float(STEP_SECONDS.get(label, 60.0 * weight)), fn)


def _system_functions() -> dict[str, Callable[[DemoContext], Section]]:
    from sonokit.demo import systems

    return {
        "echo": systems.echo,
        "av": systems.aortic_valve,
        "quality": systems.quality,
        "lus": systems.lus,
        "fetal": systems.fetal,
    }


# Seconds each step took in a full demo on a 2-core machine (make demo, fresh clone): the weights of the
# time-left estimate. Guessed weights made it swing (25 minutes left after 1 minute of an 8.5-minute run, because
# the echo training was under-weighted); measured shares keep it steady whatever the machine's speed.
STEP_SECONDS = {
    "echo: simulate": 55, "echo: train + evaluate EF model": 280, "echo: Simpson check": 1,
    "av: simulate": 2, "av: train + evaluate detector": 39, "av: train + evaluate calcification classifier": 20,
    "quality: simulate clean images": 2, "quality: train + evaluate": 34,
    "lus: simulate": 6, "lus: train + evaluate": 37, "lus: uncertainty": 3, "lus: similar cases": 5,
    "fetal: simulate": 2, "fetal: train + evaluate": 18, "fetal: uncertainty": 6, "fetal: similar cases": 6,
}  # fmt: skip
_SYSTEM_PREFIX = {"echo": "echo:", "av": "av:", "quality": "quality:", "lus": "lus:", "fetal": "fetal:"}
# relative cost of each system, for the time-left estimate: the sum of its steps
_WEIGHTS = {
    name: float(sum(v for k, v in STEP_SECONDS.items() if k.startswith(prefix)))
    for name, prefix in _SYSTEM_PREFIX.items()
}


def parse_systems(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown or not chosen:
        raise InputError(f"unknown system(s) {unknown or text!r}; choose from {','.join(SYSTEMS)}")
    return chosen


def run_demo(
    out: str | Path,
    quick: bool = False,
    systems: list[str] | None = None,
    seed: int = 0,
    hc18: str | Path | None = None,
) -> tuple[Path, list[Section]]:
    """Run the chosen systems into `out`; returns the report path and the sections (errors recorded in them)."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = systems or list(SYSTEMS)
    scale = QUICK if quick else FULL
    progress = DemoProgress(total_weight=sum(_WEIGHTS[s] for s in chosen))
    hc18_path = Path(hc18) if hc18 and Path(hc18, "images").is_dir() else None
    ctx = DemoContext(out=out, scale=scale, seed=seed, progress=progress, hc18=hc18_path)
    functions = _system_functions()
    sections: list[Section] = []
    for name in chosen:
        t0 = time.perf_counter()
        done_before = progress.done_weight
        try:
            section = functions[name](ctx)
        except Exception as err:  # one system's failure is reported in its section; the others still run
            log.exception("demo system %s failed", name)
            section = Section(key=name, title=name, error=f"{type(err).__name__}: {err}")
        # each system's steps add up to its weight; top up so the estimate stays right after a failure
        progress.done_weight = done_before + _WEIGHTS[name]
        section.seconds = time.perf_counter() - t0
        sections.append(section)
    header = [
        ("mode", f"{scale.name} ({', '.join(chosen)})"),
        ("seed", str(seed)),
        (
            "machine",
            f"{platform.machine()}, {platform.system()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        ),
        ("total time", f"{progress.elapsed:.0f} s"),
    ]
    report, _ = write_reports(out, sections, "sonokit demo report", header)
    log.info("report written to %s (%.0f s)", report, progress.elapsed)
    return report, sections
