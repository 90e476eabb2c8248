"""`sonokit train TASK --help` ends with TASK's defaults (model, epochs, lr, batch size, size), so a user sees
what the flags override before training; `sonokit train --help` lists them for every task.

The defaults come from configs/<task>.yaml over TrainConfig's own defaults (what `sonokit train` resolves when no
flag is given); reading the YAML keeps help fast, as it does not import the tasks and torch.
"""

from __future__ import annotations

import difflib

import click
from typer.core import TyperCommand

_ARGS_KEY = "sonokit.train_args"


def defaults_line(task: str, full: bool = True) -> str | None:
    """One line of `task`'s defaults (`full` adds channels and early stopping), or None for an unknown task."""
    from sonokit.core.config import config_tasks, resolve_config
    from sonokit.errors import SonokitError

    try:
        if task in config_tasks():
            cfg = resolve_config(task, task_defaults={})
        else:  # a task registered by a plugin has no YAML: ask the task itself (imports the tasks)
            from sonokit.tasks import get_task

            cfg = resolve_config(task, task_defaults=get_task(task).defaults)
    except SonokitError:
        return None
    epochs = f"{cfg.epochs} epochs" + (f" (at least {cfg.min_steps} steps)" if cfg.min_steps else "")
    line = f"model {cfg.model}, {epochs}, lr {cfg.lr:g}, batch size {cfg.batch_size}, size {cfg.size}"
    if not full:
        return line
    stopping = (
        f"early stopping after {cfg.patience} epochs without gain" if cfg.patience else "no early stopping"
    )
    return f"{line} px, {cfg.channels} channel(s), {stopping}"


def train_epilog(task: str | None) -> str:
    """The help epilog: one task's defaults, or every task's when none (or an unknown one) is named."""
    from sonokit.core.config import config_tasks

    if task:
        line = defaults_line(task)
        if line is not None:
            return (
                f"Defaults of {task} (src/sonokit/configs/{task}.yaml; --config FILE, then flags, override "
                f"them): {line}."
            )
    names = config_tasks()
    head = ""
    if task:
        close = difflib.get_close_matches(task, names, n=1)
        head = f"Unknown task {task!r}{f' (did you mean {close[0]}?)' if close else ''}. "
    lines = [f"{head}Defaults per task (flags override them; `sonokit train TASK --help` for one):"]
    lines += [f"{name}: {defaults_line(name, full=False)}" for name in names]
    return "\n\n".join(lines)


def _task_from_args(command: click.Command, ctx: click.Context) -> str | None:
    """The TASK argument of the command line being parsed (help is printed before arguments are processed)."""
    args = ctx.meta.get(_ARGS_KEY)
    if not args:
        return None
    try:
        opts, _, _ = command.make_parser(ctx).parse_args(args=list(args))
    except click.ClickException:
        return None
    task = opts.get("task")
    return str(task) if task else None


class TrainCommand(TyperCommand):
    """`train` with an epilog generated from the named task's defaults."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGS_KEY] = list(args)
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.epilog = train_epilog(_task_from_args(self, ctx))
        super().format_help(ctx, formatter)
