"""Training-loader throughput per task: the old read path (decode on a miss into a small in-memory LRU, as the
FrameCache/PreparedStore did) against the preprocessed cache (sonokit.data.cache), in one run.

For each task the engine's own training loader (task defaults, seeded augmentation, shuffling, collate) is
iterated:
    old                 in-memory LRU of 8 files: a shuffled frame usually decodes its whole cine again
                        (timed for at most --old-seconds; frames/s is what a training epoch would get)
    first epoch         an empty disk cache: each file is decoded and preprocessed once while the epoch runs
    cached              every later epoch, fold and run: frames memory-mapped from the cache
    train epoch         one real training epoch on cached data; its data share is the epoch minus the same
                        training steps run on batches already in memory (reading, augmenting, collating);
                        "reading + collating alone" is a loader pass with the augmentation switched off
    1 worker            the same epoch with a DataLoader worker preparing batches while the model trains
Data: `lus` on the BLUS-sized set of blus_like.py (360 MP4 cines 350x350x100), `ef` on simulated EchoNet AVIs,
`fetal-plane` on simulated stills. Prints a markdown table.

    python benchmarks/bench_loader.py                          # all three (the BLUS-like set is made once)
    python benchmarks/bench_loader.py --tasks lus --data-dir bench_data
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from blus_like import make_blus_like
from sonokit.core.config import resolve_config
from sonokit.core.distributed import DistInfo, pick_device
from sonokit.data.cache import PreprocessedCache, summarize
from sonokit.tasks import get_task
from sonokit.train.engine import Trainer


def _data(task: str, root: Path) -> str:
    from sonokit.synth import make_dataset

    if task == "lus":
        return str(make_blus_like(root / "blus_like"))
    kind, n, size = {"ef": ("echo", 60, 112), "fetal-plane": ("fetal-planes", 300, 256)}[task]
    folder = root / f"{kind}_{n}"
    if not folder.exists():
        make_dataset(kind, folder, n=n, seed=0, size=size)
    return str(folder)


def _holder(ds):
    """The object that owns the dataset's PreprocessedCache (ImageDataset or the echo PreparedStore)."""
    inner = getattr(ds, "base", ds)
    return getattr(inner, "store", inner)


def _use_cache(ds, root: Path | None, max_open: int) -> None:
    holder = _holder(ds)
    holder.cache = PreprocessedCache(holder.cache.recipe, root=root, max_open=max_open)


@contextlib.contextmanager
def _no_augmentation(ds):
    """The dataset without its training augmentation: what is left is reading from the cache and collating."""
    name, off = ("augment", None) if hasattr(ds, "augment") else ("train", False)
    saved = getattr(ds, name)
    setattr(ds, name, off)
    try:
        yield
    finally:
        setattr(ds, name, saved)


def _pass(loader, limit_s: float | None = None) -> tuple[int, float]:
    """Items and seconds of one pass over the loader (stopped after limit_s)."""
    n, start = 0, time.perf_counter()
    for batch in loader:
        n += len(batch["index"]) if isinstance(batch, dict) and "index" in batch else len(batch[0])
        if limit_s is not None and time.perf_counter() - start > limit_s:
            break
    return n, time.perf_counter() - start


def _compute_only(trainer: Trainer, batches: list) -> float:
    """Seconds of the training steps alone (forward, loss, backward, step) on batches already in memory."""
    from sonokit.core.loop import to_device

    task, cfg = trainer.task, trainer.cfg
    trainer.net.train()
    start = time.perf_counter()
    for batch in batches:
        batch = to_device(batch, trainer.device, cfg.channels_last)
        loss = task.loss(task.forward(trainer.net, batch), batch)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
    return time.perf_counter() - start


def bench(task_name: str, data: str, work: Path, old_seconds: float, workers: int = 1) -> dict:
    cls = get_task(task_name)
    cfg = resolve_config(task_name, overrides={"data": data, "n_boot": 0}, task_defaults=cls.defaults)
    task = cls(cfg)
    trainer = Trainer(
        task, task.prepare_index(), work / f"run-{task_name}", DistInfo(device=pick_device("cpu"))
    )
    trainer._setup()
    ds, loader = trainer.train_ds, trainer.train_loader
    files = int(trainer.items["train"]["path"].nunique())

    _use_cache(ds, None, 8)
    old_n, old_s = _pass(loader, old_seconds)

    cache_dir = work / f"cache-{task_name}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    _use_cache(ds, cache_dir, 256)
    first_n, first_s = _pass(loader)
    cached_n, cached_s = _pass(loader)
    with _no_augmentation(ds):
        _, read_s = _pass(loader)
    start = time.perf_counter()
    trainer._train_one_epoch(1)
    epoch_s = time.perf_counter() - start
    compute_s = _compute_only(trainer, list(loader))
    workers_s = None
    if workers:  # the same epoch with DataLoader workers preparing batches while the model trains
        trainer.cfg = trainer.cfg.model_copy(update={"num_workers": workers})
        trainer.train_loader = trainer._train_loader()
        _use_cache(trainer.train_ds, cache_dir, 256)
        start = time.perf_counter()
        trainer._train_one_epoch(2)
        workers_s = time.perf_counter() - start
    return {
        "task": task_name,
        "model": f"{cfg.model} {cfg.size}px",
        "files": files,
        "items": len(loader.sampler),
        "old": old_n / old_s,
        "first": first_n / first_s,
        "first_s": first_s,
        "cached": cached_n / cached_s,
        "cached_s": cached_s,
        "epoch_s": epoch_s,
        "share": max(epoch_s - compute_s, 0.0) / epoch_s,
        "read_s": read_s,
        "compute_s": compute_s,
        "workers": workers,
        "workers_s": workers_s,
        "mb": summarize(cache_dir).bytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default="lus,ef,fetal-plane")
    parser.add_argument("--data-dir", type=Path, default=Path("bench_data"))
    parser.add_argument("--old-seconds", type=float, default=30.0, help="time limit for the old path's pass")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sonokit-bench-loader-") as tmp:
        for task in args.tasks.split(","):
            rows.append(bench(task, _data(task, args.data_dir), Path(tmp), args.old_seconds))
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| task | model | files | items/epoch | old frames/s | first epoch (builds cache) | cached frames/s "
        "| train epoch | of which data (epoch - steps alone) | reading + collating alone | epoch with 1 worker "
        "| cache size |"
    )
    print("|" + "---|" * 12)
    for r in rows:
        with_workers = f"{r['workers_s']:.1f} s" if r["workers_s"] is not None else "-"
        print(
            f"| {r['task']} | {r['model']} | {r['files']} | {r['items']} | {r['old']:.1f} | "
            f"{r['first_s']:.1f} s ({r['first']:.0f}/s) | {r['cached']:.0f} | {r['epoch_s']:.1f} s | "
            f"{r['epoch_s'] - r['compute_s']:.1f} s ({100 * r['share']:.1f}%) | "
            f"{r['read_s']:.1f} s ({100 * r['read_s'] / r['epoch_s']:.1f}%) | {with_workers} | {r['mb']:.0f} MB |"
        )
    print(
        "\nspeed-up (cached vs old frames/s): "
        + ", ".join(f"{r['task']} {r['cached'] / r['old']:.0f}x" for r in rows)
    )


if __name__ == "__main__":
    main()
