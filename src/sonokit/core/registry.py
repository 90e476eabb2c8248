"""Task registry: `get_task(name)` returns the Task class the engine trains; `register_task` adds one.

It lives in the bottom layer so that loading a run folder (sonokit.core.run) can find a run's task without
importing the task packages: built-in task modules are named by string and imported on first lookup (which also
keeps `sonokit --help` fast). A new system adds its module to _BUILTIN and decorates its class with @register_task.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from sonokit.errors import InputError

if TYPE_CHECKING:
    from sonokit.tasks.base import Task

_TASKS: dict[str, type[Task]] = {}
_BUILTIN = (
    "sonokit.tasks.classification",
    "sonokit.echo.tasks_ef",
    "sonokit.echo.lv_seg",
    "sonokit.echo.lv_trace",
    "sonokit.av.tasks",
    "sonokit.quality.task",
)
_loaded = False


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make `cls` available as `sonokit train <cls.name>`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no task name")
    if cls.name in _TASKS and _TASKS[cls.name] is not cls:
        raise ValueError(f"task {cls.name!r} is registered twice")
    _TASKS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name != module:  # a missing dependency inside the module is a real error
                    raise
        _loaded = True


def task_names() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    _load_builtin()
    if name not in _TASKS:
        close = difflib.get_close_matches(name, list(_TASKS), n=2)
        hint = (
            f"; did you mean {' or '.join(close)}?"
            if close
            else f"; known tasks: {', '.join(sorted(_TASKS))}"
        )
        raise InputError(f"unknown task {name!r}{hint}")
    return _TASKS[name]
