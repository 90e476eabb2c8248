"""Find the trained models a user can pick in the app: every run folder under `--runs` with a model card.

The sidebar is built from the cards alone (task, architecture, headline metrics with CIs, intended use), so
listing a hundred runs costs a hundred small JSON reads and no torch import. Weights are loaded only for the
runs the user picks (sonokit.app.study).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonokit.systems import system_of
from sonokit.utils import get_logger

log = get_logger(__name__)

SKIP_DIRS = {"index", "plots", "checkpoints", ".git", "__pycache__"}
MAX_DEPTH = 6


@dataclass(frozen=True)
class RunInfo:
    """What the model card of one run folder says, enough to list and describe it."""

    path: Path
    task: str
    name: str
    architecture: str
    classes: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    intended_use: str = ""
    disclaimer: str = ""
    created: str = ""

    @property
    def system(self) -> str:
        """The page section that answers for the run: its system's, or an image classifier for any other task
        with classes (a plug-in)."""
        system = system_of(self.task)
        return system.name if system else ("classification" if self.classes else "other")

    @property
    def label(self) -> str:
        """A short unique-enough name for a picker: task / run folder name (architecture)."""
        return f"{self.task} / {self.path.name} ({self.architecture})"

    def headline(self, split: str = "test", n: int = 2) -> list[str]:
        """'mae 7.12 [6.1, 8.3]' strings for the first n headline metrics of a split (val if no test)."""
        table = self.metrics.get(split) or self.metrics.get("val") or {}
        out = []
        for key in task_headline(self.task):
            entry = table.get(key)
            value = entry.get("value") if isinstance(entry, dict) else entry
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            ci = entry.get("ci95") if isinstance(entry, dict) else None
            ci_text = (
                f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci and all(isinstance(c, (int, float)) for c in ci) else ""
            )
            out.append(f"{key} {value:.3g}{ci_text}")
            if len(out) == n:
                break
        return out


def read_card(run_dir: str | Path) -> RunInfo | None:
    """The RunInfo of a run folder, or None when it has no usable card, config or weights (logged, not raised:
    one broken folder must not hide the others)."""
    run_dir = Path(run_dir)
    card_path = run_dir / "model_card.json"
    if not (run_dir / "model.safetensors").is_file() or not (run_dir / "config.yaml").is_file():
        log.debug("skipping %s: no model.safetensors or config.yaml", run_dir)
        return None
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log.warning("skipping %s: unreadable model card (%s)", run_dir, str(err).splitlines()[0])
        return None
    if not isinstance(card, dict) or not card.get("task"):
        log.warning("skipping %s: the model card names no task", run_dir)
        return None
    arch = card.get("architecture") or {}
    arch_name = arch.get("name") if isinstance(arch, dict) else str(arch)
    return RunInfo(
        path=run_dir.resolve(),
        task=str(card["task"]),
        name=str(card.get("name") or run_dir.name),
        architecture=str(arch_name or "?"),
        classes=tuple(str(c) for c in card.get("classes") or ()),
        metrics=card.get("metrics") or {},
        intended_use=str(card.get("intended_use") or ""),
        disclaimer=str(card.get("disclaimer") or ""),
        created=str(card.get("created") or ""),
    )


def _card_files(root: Path, depth: int = 0):
    """model_card.json files below root, not descending into run outputs (index/, plots/) or past MAX_DEPTH."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name == "model_card.json" and entry.is_file():
            yield entry
        elif (
            entry.is_dir()
            and depth < MAX_DEPTH
            and entry.name not in SKIP_DIRS
            and not entry.name.startswith(".")
        ):
            yield from _card_files(entry, depth + 1)


def task_headline(task: str) -> tuple[str, ...]:
    """The task's headline metrics (sonokit.tasks.base.Task.headline); a task this install lacks gets the base
    class's."""
    from sonokit.errors import InputError
    from sonokit.tasks import Task, get_task

    try:
        return get_task(task).headline
    except InputError:
        return Task.headline


def discover_runs(root: str | Path) -> list[RunInfo]:
    """Every usable run folder under root (root itself may be a run folder), sorted by system, task and path."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    runs = [info for card in _card_files(root) if (info := read_card(card.parent)) is not None]
    return sorted(runs, key=lambda r: (r.system, r.task, str(r.path)))


def by_system(runs: list[RunInfo]) -> dict[str, list[RunInfo]]:
    """{"echo": [...], "classification": [...], "quality": [...], "av": [...]} (missing systems absent)."""
    out: dict[str, list[RunInfo]] = {}
    for r in runs:
        out.setdefault(r.system, []).append(r)
    return out


def confine(asked: str | Path, base: str | Path) -> tuple[str, bool]:
    """(`asked` resolved against `base`, True) when it lies inside `base` (the runs folder the app was started
    with), else (`base`, False).

    The sidebar's folder box is open to every visitor of the page; it must not let them list or load models from
    anywhere on the server's disk.
    """
    base_path = Path(base).expanduser().resolve()
    try:
        target = Path(asked).expanduser()
        target = (target if target.is_absolute() else base_path / target).resolve()
    except (OSError, RuntimeError, ValueError):
        return str(base), False
    if target == base_path or base_path in target.parents:
        return str(target), True
    return str(base), False
