"""Throughput of the registered backbones: images/s for training (forward + backward + SGD step) and inference.

Prints a markdown table. `--compare channels_last` times each model in the default (NCHW) and channels_last
memory formats; `--compare threads` times it with 1 and 2 torch threads. Examples:

    python benchmarks/bench_models.py                                   # quick default set, 112 and 224 px
    python benchmarks/bench_models.py --models resnet18,vgg16 --sizes 224 --compare channels_last
    python benchmarks/bench_models.py --compare threads --out bench_models.md
    python benchmarks/bench_models.py --device cuda --batch 64 --models resnet50,efficientnet_b4
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sonokit.models import count_params, create, model_names
from sonokit.utils import atomic_write_text

QUICK = "tinycnn,mobilenetv3_small,efficientnet_b0,resnet18"


@dataclass
class Variant:
    label: str
    channels_last: bool = False
    threads: int | None = None


def _variants(compare: str, threads: int) -> list[Variant]:
    if compare == "channels_last":
        return [
            Variant("nchw", threads=threads),
            Variant("channels_last", channels_last=True, threads=threads),
        ]
    if compare == "threads":
        return [Variant("1 thread", threads=1), Variant("2 threads", threads=2)]
    return [Variant(f"{threads} thread(s)", threads=threads)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - start


def bench_one(
    name: str,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    in_chans: int,
    variant: Variant,
    device: torch.device,
) -> tuple[float, float]:
    """(train images/s, inference images/s) for one model, input size and variant."""
    if variant.threads is not None:
        torch.set_num_threads(variant.threads)
    torch.manual_seed(0)
    model = create(name, num_classes=2, in_chans=in_chans).to(device)
    x = torch.randn(batch, in_chans, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    def infer_step() -> None:
        with torch.inference_mode():
            model(x)

    model.train()
    train_s = _time(train_step, steps, warmup, device)
    model.eval()
    infer_s = _time(infer_step, steps, warmup, device)
    return batch * steps / train_s, batch * steps / infer_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=QUICK, help=f"comma list, or 'all' (default: {QUICK})")
    parser.add_argument("--sizes", default="112,224", help="comma list of square input sizes")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: the machines are 2 shared cores)"
    )
    parser.add_argument("--compare", choices=["none", "channels_last", "threads"], default="none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()

    names = (
        model_names("image")
        if args.models == "all"
        else [m.strip() for m in args.models.split(",") if m.strip()]
    )
    sizes = [int(s) for s in args.sizes.split(",")]
    device = torch.device(args.device)
    variants = _variants(args.compare, args.threads)

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        f"torch {torch.__version__}, device {args.device} ({dev}), batch {args.batch}, "
        f"{args.in_chans} channel(s), {args.steps} timed steps after {args.warmup} warm-up",
        "",
        "| model | params | size | variant | train img/s | infer img/s | train x | infer x |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name in names:
        params = f"{count_params(name) / 1e6:.2f}M"
        for size in sizes:
            base: tuple[float, float] | None = None
            for variant in variants:
                train, infer = bench_one(
                    name, size, args.batch, args.steps, args.warmup, args.in_chans, variant, device
                )
                base = base or (train, infer)
                row = (
                    f"| {name} | {params} | {size} | {variant.label} | {train:.1f} | {infer:.1f} | "
                    f"{train / base[0]:.2f} | {infer / base[1]:.2f} |"
                )
                lines.append(row)
                print(row, flush=True)
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
