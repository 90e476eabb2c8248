"""The Task contract (sonokit.tasks.base) and the generic image/video classifiers; the registry itself lives in
sonokit.core.registry so that loading a run needs no task package."""

from __future__ import annotations

from sonokit.core.registry import get_task, register_task, task_names
from sonokit.tasks.base import Task, TaskOptions

__all__ = ["Task", "TaskOptions", "get_task", "register_task", "task_names"]
