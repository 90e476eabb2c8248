"""Declared capabilities: every built-in task belongs to one system and role, the valve cascade and `ef predict`
refuse runs of the wrong role with one line naming the folder, and each task's metric directions agree."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sonokit.errors import InputError
from sonokit.systems import ECHO, SYSTEMS, VALVE, system_of
from sonokit.tasks import get_task, task_names


def test_every_task_has_one_system_and_role() -> None:
    for name in task_names():
        owners = [s for s in SYSTEMS if name in s.tasks]
        assert len(owners) == 1, (name, [s.name for s in owners])
        assert system_of(name) is owners[0] and owners[0].role_of(name) is not None
    assert set(task_names()) == {t for s in SYSTEMS for t in s.tasks}  # no system names a task that is gone
    assert system_of("no-such-task") is None


def test_require_names_the_run_and_the_role() -> None:
    run = SimpleNamespace(task=SimpleNamespace(name="lv-seg"), run_dir=Path("runs/lv"))
    assert ECHO.require(run, "seg") is run
    with pytest.raises(InputError) as err:
        VALVE.require(run, "detector")
    text = str(err.value)
    assert "\n" not in text and "runs/lv" in text and "av-detect" in text and "'lv-seg'" in text


@pytest.mark.parametrize("name", task_names())
def test_monitor_direction_and_headline_are_declared(name: str) -> None:
    task = get_task(name)
    metric, mode = task.monitor
    assert task.metric_mode(metric) == mode, (
        f"{name}: monitor {metric} is {mode} but metric_mode says otherwise"
    )
    assert task.headline and len(set(task.headline)) == len(task.headline)
    assert task.headline_of({k: 1.0 for k in reversed(task.headline)}) == list(task.headline)
    assert task.headline_of({task.headline[0]: None}) == []
