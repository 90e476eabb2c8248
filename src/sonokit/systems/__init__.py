"""The systems: what a user runs is often several trained runs working together (echo: a video EF model and an LV
model; the aortic valve: a detector, then a classifier on its crop), so a system names its roles and which tasks
can fill each. Declared once here and read by `ef predict`, the valve cascade, the app and the demo, instead of
each testing task names on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonokit.errors import InputError


@dataclass(frozen=True)
class Role:
    """One run a system uses: its name, the tasks whose runs can fill it, and how a user would call it."""

    name: str
    tasks: tuple[str, ...]
    title: str


@dataclass(frozen=True)
class System:
    name: str
    title: str
    roles: tuple[Role, ...]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for role in self.roles for t in role.tasks)

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(f"{self.name} has no role {name!r}")

    def role_of(self, task: str) -> Role | None:
        """The role a run of `task` plays in this system (None: it plays none)."""
        return next((role for role in self.roles if task in role.tasks), None)

    def require(self, run: Any, role: str, where: str | Path | None = None) -> Any:
        """`run` (a loaded run) if its task fills `role`, else a one-line error naming the run folder."""
        wanted = self.role(role)
        if run.task.name not in wanted.tasks:
            raise InputError(
                f"a {run.task.name!r} run cannot be the {self.title} {wanted.title} "
                f"(it takes {' or '.join(wanted.tasks)} runs)",
                where if where is not None else getattr(run, "run_dir", None),
            )
        return run


ECHO = System(
    "echo",
    "echo",
    (
        Role("video", ("ef",), "EF model (video)"),
        Role("seg", ("lv-seg",), "LV segmentation model"),
        Role("trace", ("lv-trace",), "LV tracing model"),
    ),
)
VALVE = System(
    "av",
    "aortic valve",
    (Role("detector", ("av-detect",), "detector"), Role("classifier", ("av-calcification",), "classifier")),
)
QUALITY = System("quality", "quality", (Role("gate", ("quality",), "gate"),))
CLASSIFIERS = System(
    "classification",
    "image classification",
    (Role("classifier", ("classify", "fetal-plane", "lus"), "classifier"),),
)
SYSTEMS = (ECHO, VALVE, QUALITY, CLASSIFIERS)


def system_of(task: str) -> System | None:
    """The built-in system a task's runs belong to (None: a task no system names, e.g. a plug-in)."""
    return next((system for system in SYSTEMS if task in system.tasks), None)
