"""External validation: score a trained run on other data, into a folder of its own.

`sonokit evaluate RUN --data OTHER --out DIR` predicts every row of OTHER (its own split column is ignored
unless --split names one; nothing is re-split), and writes metrics_external.json, predictions_external.csv,
plots/, by_<column>_external.csv/.md and a report.html naming the run, the data and its row count. Everything is
written into a hidden staging folder beside DIR and renamed into place at the end, so a failure leaves no partial
output; the run folder is only read.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sonokit.errors import InputError
from sonokit.evaluate.breakdown import BySpec

EXTERNAL = "external"
RUN_MARKERS = ("model.safetensors", "config.yaml", "checkpoint_last.pt")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_out(run_dir: Path, out: Path) -> None:
    """Refuse an output folder that is the run, holds the run, is a run, or holds anything but an evaluation."""
    run, target = run_dir.resolve(), out.resolve()
    if _inside(run, target):
        raise InputError(
            "is the run folder or contains it: choose another --out (the run is never written)", out
        )
    if target.exists() and not target.is_dir():
        raise InputError("--out must be a folder, this is a file", out)
    if target.is_dir() and any(target.iterdir()):
        if any((target / m).exists() for m in RUN_MARKERS):
            raise InputError("is a run folder: choose another --out", out)
        if not any(target.glob("metrics_*.json")):
            raise InputError("exists and is not an evaluation folder: choose an empty or new --out", out)


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A staging folder beside `out`, renamed to `out` on success (replacing an earlier evaluation there) and
    removed on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def evaluate_external(
    run_dir: str | Path,
    data: str | Path | None,
    out: str | Path,
    split: str | None = None,
    by: Sequence[BySpec] = (),
    device: str = "auto",
    n_boot: int | None = None,
) -> dict[str, Any]:
    """Evaluate a run on `data` (default: its own training data, test split) into `out`; returns the metrics.

    Other data defaults to every row (split "all"); the training data defaults to the run's test split, so the
    same command also copies a run's test evaluation (with --by tables) into a folder of its own.
    """
    from sonokit.core.loop import amp_dtype
    from sonokit.core.run import is_training_data, load_run, split_rows
    from sonokit.evaluate.breakdown import by_levels
    from sonokit.evaluate.report import write_report
    from sonokit.evaluate.runner import column_aliases, evaluate_items

    run_dir, out = Path(run_dir), Path(out)
    check_out(run_dir, out)
    if data is not None and not Path(data).exists():
        raise InputError("data not found", data)
    run = load_run(run_dir, device)
    same = is_training_data(run, data)
    split = split or ("test" if same else "all")
    rows, _ = split_rows(run, data, split)
    task = run.task
    source = task.cfg.data or ""
    levels = by_levels(rows, by, source, column_aliases(task.cfg)) if by else None
    label = split if same else EXTERNAL
    items = task.expand(rows if same else rows.assign(split=EXTERNAL))
    info = {
        "run": str(run.run_dir.resolve()),
        "data": str(Path(source).resolve()),
        "data_split": split,
        "rows": int(len(rows)),
        "items": int(len(items)),
    }
    with staged_folder(out) as tmp:
        metrics = evaluate_items(
            task,
            run.model,
            items,
            label,
            tmp,
            run.device,
            amp_dtype(task.cfg, run.device),
            model_name=run.name,
            n_boot=n_boot,
            by=by,
            levels=levels,
            info=info,
        )
        write_report(tmp, card_dir=run.run_dir)
    return metrics
