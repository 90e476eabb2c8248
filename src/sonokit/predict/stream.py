"""Batch prediction over thousands of files: decode in worker processes, infer in full batches, stream the CSV.

Why this shape:
- Decoding (DICOM, video, PNG) dominates on a CPU, so each file is read by a DataLoader worker (`workers`): the
  worker runs the task's own `predict_items` + `build_dataset` for that one file, so a file goes through exactly
  the preprocessing the model was trained with, and a corrupt file becomes an error line, not a crash.
- The main process feeds the model full batches regardless of file boundaries (a 100-frame cine fills several
  batches, 32 PNGs fill one), and writes a file's rows as soon as all of its items are through the model.
- Rows go to `<out>.partial`, appended and flushed (fsync) after every model batch with one write call, so a crash
  or a kill loses at most the batch in flight. The partial file is renamed to `<out>` only when every file is
  done: a complete `<out>` always means a complete run.
- `resume=True` reads `<out>.partial` (or a previous complete `<out>`), skips every file that already has rows and
  appends the rest. A half-written last line (power loss) is cut off first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from sonokit.core.loop import amp_dtype, concat_parts, forward_batch
from sonokit.core.run import LoadedRun, public_columns
from sonokit.data.cache import transient
from sonokit.errors import InputError, SonokitError
from sonokit.predict.result import PredictionFile
from sonokit.utils import atomic_write_text, get_logger, progress
from sonokit.utils.paths import is_utf8, printable

if TYPE_CHECKING:
    from sonokit.predict.uncertainty import UncertaintyColumns

log = get_logger(__name__)


@dataclass
class StreamResult(PredictionFile):
    """A streamed prediction (the rows stay on disk, not in `table`)."""

    files_done: int = 0  # files predicted by this call
    files_skipped: int = 0  # files already in the previous CSV (resume)
    backend: str = "torch"


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


# ---------------------------------------------------------------------------------------------- worker side


@dataclass
class _Prepared:
    """One file as a worker hands it over: its item rows and items (numpy, see _to_numpy), or an error."""

    path: str
    rows: pd.DataFrame | None
    items: list[Any]
    error: str | None = None


def _to_numpy(obj: Any) -> Any:
    # numpy arrays travel through the worker pipe by value; tensors would hold one shared-memory file descriptor
    # each until consumed, which exhausts the fd limit when many frames of long cines are queued
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def _to_torch(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


class FileItems(torch.utils.data.Dataset):
    """Item i = everything the model needs from file i, prepared by the task exactly as at evaluation."""

    def __init__(self, task: Any, files: Sequence[Path]) -> None:
        self.task = task
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> _Prepared:
        f = self.files[i]
        try:
            rows, bad = self.task.predict_items([f])
            if bad:
                return _Prepared(str(f), None, [], str(bad[0][1]))
            if rows.empty:
                return _Prepared(str(f), None, [], str(InputError("nothing to predict (no frames)", f)))
            rows = rows.reset_index(drop=True)
            with transient():  # a new study is decoded once here; nothing of it goes to the disk cache
                ds = self.task.build_dataset(rows, train=False)
                items = [_to_numpy(ds[j]) for j in range(len(ds))]
        except SonokitError as err:
            return _Prepared(str(f), None, [], str(err))
        except (
            Exception
        ) as err:  # a decoder's own error (cv2.error, struct.error...): one file, not the whole run
            first = (str(err).strip().splitlines() or [""])[0][:200]
            return _Prepared(
                str(f), None, [], str(InputError(f"cannot read ({type(err).__name__}: {first})", f))
            )
        return _Prepared(str(f), rows, items)


def _identity(x: Any) -> Any:
    return x


def _worker_init(worker_id: int) -> None:
    from sonokit.utils.procs import die_with_parent

    torch.set_num_threads(1)  # decoding workers must not compete with the model's threads
    die_with_parent()  # a killed predict must not leave its workers (and their frames) behind


# ---------------------------------------------------------------------------------------------- the CSV


def committed_path(partial: Path) -> Path:
    """Sidecar holding the byte length of `partial` up to the last complete, fsynced write."""
    return partial.with_name(partial.name + ".committed")


class CsvAppender:
    """Append DataFrames to a CSV with one header; one write + fsync per call, then the committed length.

    A write that fails half-way (a full disk) or a kill during it leaves rows of a file that is not complete;
    the committed length (`<partial>.committed`, replaced atomically after each fsync) says where the complete
    writes end, and `--resume` cuts the file back there, so a file counts as done only when all its rows are.
    Paths that are not UTF-8 are written as their original bytes (surrogateescape).
    """

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if fresh or not path.exists():
            path.write_bytes(b"")
            committed_path(path).unlink(missing_ok=True)
        self.columns: list[str] | None = None
        if path.stat().st_size:
            self.columns = pd.read_csv(path, nrows=0, encoding_errors="surrogateescape").columns.tolist()
        self._warned = False
        self.fh = open(path, "ab", buffering=0)  # noqa: SIM115 (closed in close())
        self.committed = path.stat().st_size

    def write(self, df: pd.DataFrame) -> None:
        if df.empty:
            return
        header = self.columns is None
        if header:
            self.columns = list(df.columns)
        else:
            extra = [c for c in df.columns if c not in self.columns]
            if extra and not self._warned:
                log.warning(
                    "%s: columns %s are not in the existing header and are left out", self.path, extra
                )
                self._warned = True
            df = df.reindex(columns=self.columns, fill_value="")
        data = df.to_csv(index=False, header=header, lineterminator="\n").encode("utf-8", "surrogateescape")
        try:
            view = memoryview(data)
            while view:
                view = view[self.fh.write(view) :]
            os.fsync(self.fh.fileno())
        except OSError as err:
            try:  # give the space back and leave only complete files; --resume cuts here too
                os.ftruncate(self.fh.fileno(), self.committed)
            except OSError:
                pass
            if header:
                self.columns = None
            raise InputError(
                f"cannot write ({err.strerror or err}); rerun with --resume when there is space", self.path
            ) from None
        self.committed += len(data)
        try:
            atomic_write_text(committed_path(self.path), f"{self.committed}\n")
        except OSError:
            pass  # the previous committed length is still a safe (earlier) place to resume from

    def close(self) -> None:
        self.fh.close()


def _cut_to_committed(path: Path) -> None:
    """Drop rows after the last complete write (see CsvAppender); without a sidecar cut a torn last line."""
    marker = committed_path(path)
    size = path.stat().st_size
    if marker.exists():
        try:
            committed = int(marker.read_text(encoding="ascii").strip())
        except (ValueError, OSError):
            committed = None
        if committed is not None and committed < size:
            log.warning("%s: dropping %d bytes after the last complete write", path, size - committed)
            with open(path, "r+b") as fh:
                fh.truncate(committed)
            return
    _repair_tail(path)


def _repair_tail(path: Path) -> None:
    """Cut a half-written last line (the process died mid-write) so the partial CSV parses."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        log.warning("%s: dropping an incomplete last line", path)
        with open(path, "r+b") as fh:
            fh.truncate(cut)


def _previous_rows(out: Path, partial: Path, model_name: str) -> set[str]:
    """Resolved paths already predicted (in <out>.partial, else in <out>, which is then continued)."""
    if not partial.exists() and out.exists():
        partial.write_bytes(out.read_bytes())
    if not partial.exists():
        return set()
    _cut_to_committed(partial)
    if partial.stat().st_size == 0:
        return set()
    try:
        prev = pd.read_csv(partial, dtype=str, keep_default_na=False, encoding_errors="surrogateescape")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"cannot resume: not a readable predictions CSV ({err})", partial) from err
    if "path" not in prev.columns:
        raise InputError("cannot resume: the CSV has no path column", partial)
    if "model" in prev.columns:
        others = sorted(set(prev["model"]) - {model_name, ""})
        if others:
            raise InputError(
                f"cannot resume: rows were written by another model ({', '.join(others)}); "
                "choose another --out or delete the file",
                partial,
            )
    return {done_key(p) for p in prev["path"].unique()}


# ---------------------------------------------------------------------------------------------- inputs


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str], list[Path]]:
    """(files, error lines, tables): folders are searched, a .csv is a table whose `path` column lists the files."""
    from sonokit.io import find_inputs

    files: list[Path] = []
    errors: list[str] = []
    tables: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        try:
            if path.is_file() and path.suffix.lower() == ".csv":
                from sonokit.data import load_index

                df = load_index(path, check_files=False)
                if "path" not in df.columns:
                    raise InputError("table has no path column", path)
                files.extend(Path(p) for p in df["path"].astype(str))
                tables.append(path)
            else:
                files.extend(find_inputs([raw]))
        except InputError as err:
            errors.append(str(err))
    unique = list(dict.fromkeys(files))  # keep table order, drop repeats
    return unique, errors, tables


# ---------------------------------------------------------------------------------------------- odd names


class NameAliases:
    """Files whose names are not UTF-8 are predicted through ASCII symlinks in a private temporary folder:
    pandas' text columns (the tasks' item tables) cannot hold such names. The CSV gets the printable name
    (`\\xNN` for each undecodable byte), which is also what --resume matches."""

    def __init__(self) -> None:
        self.display: dict[str, str] = {}  # alias path -> printable original path
        self._dir: Path | None = None

    def add(self, path: Path) -> Path:
        if is_utf8(path):
            return path
        import tempfile

        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="sonokit-names-"))
        suffix = path.suffix if is_utf8(path.suffix) else ""
        alias = self._dir / f"file{len(self.display):06d}{suffix}"
        os.symlink(os.path.abspath(path), alias)
        self.display[str(alias)] = printable(path)
        return alias

    def close(self) -> None:
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)


def done_key(path: str | Path) -> str:
    """How a file is matched against the rows of an earlier run (see NameAliases for odd names)."""
    return str(Path(path if is_utf8(path) else printable(path)).resolve())


# ---------------------------------------------------------------------------------------------- the loop


@dataclass
class _File:
    path: str
    rows: pd.DataFrame
    start: int  # global item index of its first item
    end: int


class _Stream:
    """Bookkeeping between the worker queue, the model batches and the CSV."""

    def __init__(
        self,
        run: LoadedRun,
        writer: CsvAppender,
        batch_size: int,
        lookup: dict[str, str],
        extra: UncertaintyColumns | None = None,
    ) -> None:
        self.extra = extra
        self.run = run
        self.writer = writer
        self.batch_size = batch_size
        self.lookup = lookup
        self.dtype = amp_dtype(run.cfg, run.device)
        self.files: list[_File] = []  # waiting for (some of) their outputs, in order
        self.queue: list[Any] = []  # items not yet through the model
        self.parts: list[dict[str, np.ndarray]] = []  # outputs of items whose file is not yet written
        self.next_index = 0
        self.done_index = 0  # items with index < done_index are through the model
        self.files_done = 0
        self.rows = 0
        self.display: dict[str, str] = {}  # alias path -> name to write (NameAliases)

    def add(self, prep: _Prepared) -> None:
        rows = prep.rows
        assert rows is not None
        start = self.next_index
        for item in prep.items:
            item = _to_torch(item)
            item["index"] = start + int(item["index"])
            self.queue.append(item)
        self.next_index = start + len(prep.items)
        self.files.append(_File(prep.path, rows, start, self.next_index))
        while len(self.queue) >= self.batch_size:
            self._run_batch()

    def finish(self) -> None:
        while self.queue:
            self._run_batch()

    def _run_batch(self) -> None:
        task, run = self.run.task, self.run
        chunk, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        collate = task.collate or torch.utils.data.default_collate
        with torch.no_grad():
            batch, outputs, _ = forward_batch(
                task, run.model, collate(chunk), run.device, self.dtype, run.cfg.channels_last
            )
        part = task.collect(outputs, batch)
        if self.extra is not None:
            part.update(self.extra.take())
        self.parts.append(part)
        self.done_index += len(chunk)
        self._emit()

    def _emit(self) -> None:
        """Write every file whose items are all through the model."""
        ready = 0
        while ready < len(self.files) and self.files[ready].end <= self.done_index:
            ready += 1
        if not ready:
            return
        files, self.files = self.files[:ready], self.files[ready:]
        boundary, base = files[-1].end, files[0].start
        collected = concat_parts(self.parts)
        keep = collected["index"] < boundary
        rest = {k: v[~keep] for k, v in collected.items()}
        self.parts = [rest] if len(rest["index"]) else []
        out = {k: v[keep] for k, v in collected.items()}
        out["index"] = out["index"] - base
        items = pd.concat([f.rows for f in files], ignore_index=True)
        preds = self.run.task.predictions(out, items)
        if self.extra is not None:
            preds = self.extra.annotate(preds, out)
        if self.lookup:
            preds["y_true"] = preds["path"].map(lambda p: self.lookup.get(str(Path(p).resolve()), ""))
        preds["model"] = self.run.name
        order = {f.path: i for i, f in enumerate(files)}
        preds = preds.iloc[np.argsort(preds["path"].map(order).to_numpy(), kind="stable")]
        if self.display:
            preds["path"] = preds["path"].map(lambda p: self.display.get(str(p), p))
        preds = public_columns(preds)
        self.writer.write(preds)
        self.files_done += len(files)
        self.rows += len(preds)


def stream_predict(
    run: LoadedRun,
    inputs: Sequence[str | Path],
    out: str | Path,
    batch_size: int | None = None,
    workers: int = 0,
    resume: bool = False,
    labels: str | Path | None = None,
    uncertainty: bool = False,
) -> StreamResult:
    """Predict every readable file under `inputs` into the CSV `out`, streaming (see the module docstring).

    `uncertainty` adds the columns of sonokit.predict.uncertainty (needs `sonokit uncertainty RUN` first)."""
    from sonokit.export.backend import backend_name
    from sonokit.predict.predictor import labels_lookup

    out = Path(out)
    partial = partial_path(out)
    extra = None
    if uncertainty:
        from sonokit.predict.uncertainty import UncertaintyColumns

        extra = UncertaintyColumns(run)  # fails before anything is read or written
    files, errors, tables = expand_inputs(inputs)
    lookup = labels_lookup(labels, run) if labels is not None else {}
    if labels is None:
        for table in tables:  # a table with labels gives y_true, as --labels would
            try:
                lookup.update(labels_lookup(table, run))
            except InputError:
                pass
    if resume:
        done = _previous_rows(out, partial, run.name)
    else:
        if partial.exists():
            log.warning(
                "%s exists from an unfinished run; starting over (pass --resume to continue it)", partial
            )
        done = set()
    todo = [f for f in files if done_key(f) not in done]
    result = StreamResult(
        None, files_skipped=len(files) - len(todo), errors=errors, backend=backend_name(run)
    )
    if done:
        log.info("resume: %d of %d files already predicted", result.files_skipped, len(files))
    writer = CsvAppender(partial, fresh=not resume)
    bs = batch_size or run.cfg.eval_batch_size or run.cfg.batch_size
    stream = _Stream(run, writer, bs, lookup, extra)
    aliases = NameAliases()
    todo = [aliases.add(Path(f)) for f in todo]
    stream.display = aliases.display
    loader = torch.utils.data.DataLoader(
        FileItems(run.task, todo),
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )
    run.model.eval()
    try:
        for prep in progress(loader, desc="predict", total=len(todo), unit="file"):
            if prep.error is not None:
                shown = aliases.display.get(prep.path)
                errors.append(prep.error.replace(prep.path, shown) if shown else prep.error)
                continue
            stream.add(prep)
        stream.finish()
    finally:
        writer.close()
        aliases.close()
        if extra is not None:
            extra.close()
    result.files_done, result.rows = stream.files_done, stream.rows
    if partial.stat().st_size == 0:
        partial.unlink()
        committed_path(partial).unlink(missing_ok=True)
        return result
    os.replace(partial, out)
    committed_path(partial).unlink(missing_ok=True)
    result.path = out
    return result
