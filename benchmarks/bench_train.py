"""End-to-end training throughput of the engine: samples/s per task and backbone, data pipeline included.

Unlike bench_models.py (the network alone), this times what `sonokit train` does per batch: decode, letterbox,
seeded augmentation, collate, forward, loss, backward, AdamW step, output collection. It also times the data
pipeline alone, which tells whether the CPU spends its time on pixels or on the network.
Data is simulated (`sonokit synth`) into a temporary folder. Prints a markdown table.

`--compare KEY=VALUE` adds, for each task/model, a second row with that config option changed, and a speed-up
column. Examples:

    python benchmarks/bench_train.py                                          # fetal-plane + lus, tinycnn
    python benchmarks/bench_train.py --models tinycnn,mobilenetv3_small --size 96
    python benchmarks/bench_train.py --compare batch_size=64
    python benchmarks/bench_train.py --compare channels_last=true --device cuda
    python benchmarks/bench_train.py --compare num_workers=2 --tasks fetal-plane
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from sonokit.core.config import resolve_config
from sonokit.core.distributed import DistInfo, pick_device
from sonokit.core.loop import to_device
from sonokit.tasks import get_task
from sonokit.train.engine import Trainer
from sonokit.utils import atomic_write_text

DATA = {
    "fetal-plane": ("fetal-planes", 120, ""),
    "lus": ("lus", 24, "lus.csv"),
    "classify": ("fetal-planes", 120, ""),
}


def make_data(task: str, root: Path, size: int) -> str:
    from sonokit.synth import make_dataset

    kind, n, file = DATA[task]
    folder = root / kind
    if not folder.exists():
        make_dataset(kind, folder, n=n, seed=0, size=max(size, 64))
    return str(folder / file) if file else str(folder)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(
    task_name: str, data: str, model: str, overrides: dict[str, Any], steps: int, run_dir: Path
) -> dict:
    cls = get_task(task_name)
    values = {"data": data, "model": model, "limit_train_batches": steps, "n_boot": 0, **overrides}
    cfg = resolve_config(task_name, overrides=values, task_defaults=cls.defaults)
    task = cls(cfg)
    index = task.prepare_index()
    trainer = Trainer(task, index, run_dir, DistInfo(device=pick_device(cfg.device)))
    trainer._setup()
    n_train = len(trainer.train_ds)
    steps = min(steps, len(trainer.train_loader))
    trainer._train_one_epoch(0)  # warm-up: allocator, cudnn autotune, decoder caches
    _sync(trainer.device)
    start = time.perf_counter()
    trainer._train_one_epoch(1)
    _sync(trainer.device)
    seconds = time.perf_counter() - start
    # the data pipeline alone, same loader, same number of batches
    start = time.perf_counter()
    for i, batch in enumerate(trainer.train_loader):
        if i + 1 >= steps:
            break
        to_device(batch, trainer.device)
    data_seconds = time.perf_counter() - start
    samples = steps * cfg.batch_size
    return {
        "train_items": n_train,
        "samples_s": samples / seconds,
        "data_samples_s": samples / max(data_seconds, 1e-9),
        "ms_step": 1000 * seconds / steps,
        "steps": steps,
    }


def _parse_compare(text: str | None) -> tuple[str, dict[str, Any]] | None:
    if not text:
        return None
    key, _, value = text.partition("=")
    if not key or not value:
        raise SystemExit(f"--compare expects KEY=VALUE (a config option), got {text!r}")
    return text, {key: yaml.safe_load(value)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default="fetal-plane,lus")
    parser.add_argument("--models", default="tinycnn")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed batches (after one warm-up pass)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--compare", default=None, help="KEY=VALUE config change to compare, e.g. batch_size=64"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = {"size": args.size, "batch_size": args.batch_size, "device": args.device}
    compare = _parse_compare(args.compare)
    variants = [("baseline", {})] + ([compare] if compare else [])

    header = (
        "| task | model | variant | size | batch | items | train samples/s | data-only samples/s | ms/step |"
    )
    lines = [header, "|" + "---|" * 9]
    with tempfile.TemporaryDirectory(prefix="sonokit-bench-train-") as tmp:
        root = Path(tmp)
        for task in args.tasks.split(","):
            data = make_data(task, root / "data", args.size)
            for model in args.models.split(","):
                speeds = []
                for k, (label, change) in enumerate(variants):
                    overrides = {**base, **change}
                    r = bench(task, data, model, overrides, args.steps, root / f"run-{task}-{model}-{k}")
                    speeds.append(r["samples_s"])
                    lines.append(
                        f"| {task} | {model} | {label} | {overrides['size']} | {overrides['batch_size']} | "
                        f"{r['train_items']} | {r['samples_s']:.1f} | {r['data_samples_s']:.1f} | {r['ms_step']:.0f} |"
                    )
                if len(speeds) == 2:
                    lines.append(f"| {task} | {model} | speed-up | | | | {speeds[1] / speeds[0]:.2f}x | | |")
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    footer = (
        f"\n{device.type} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.steps} timed steps after one warm-up pass; samples/s include decoding and augmentation."
    )
    table = "\n".join(lines) + "\n" + footer + "\n"
    print(table)
    if args.out:
        atomic_write_text(args.out, table)


if __name__ == "__main__":
    main()
