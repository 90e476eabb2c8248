"""Single-process vs DistributedDataParallel training (torchrun, gloo on the CPU): speed and loss-curve agreement.

Questions: (1) how close is a 2-process run with --batch-size B/2 to a 1-process run with --batch-size B, and
(2) what does the second process buy in samples/s on this machine?
Each model variant is trained twice on the same simulated fetal-plane data (1 process, then N processes, same
global batch) and the table gives the max relative difference of the logged train/val losses and the training
throughput (samples per second of the train phase, from log.csv).

Variants: `tinycnn` with the task defaults (BatchNorm, class-weighted loss: each process normalises with its own
half batch, so the curves drift apart by a little) and `tinycnn-gn` with `balance: none` (GroupNorm, no
per-process statistics: the curves agree to float rounding). tests/test_ddp.py asserts the second case.

    python benchmarks/bench_train_ddp.py                          # both variants, 2 processes, 3 epochs
    python benchmarks/bench_train_ddp.py --nproc 2 --n 96 --size 64 --epochs 3 --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ENTRY = """
import sys
from torch import nn
from sonokit.models.backbones import TinyCNN
from sonokit.models.registry import register_model


@register_model("tinycnn-gn", family="bench", description="TinyCNN with GroupNorm")
def tinycnn_gn(in_chans=1, **kw):
    m = TinyCNN(in_chans, **kw)
    for i, layer in enumerate(m.features):
        if isinstance(layer, nn.BatchNorm2d):
            m.features[i] = nn.GroupNorm(4, layer.num_features)
    return m


if __name__ == "__main__":
    from sonokit.cli.main import main

    sys.argv = ["sonokit", *sys.argv[1:]]
    main()
"""
VARIANTS = {
    "tinycnn (BatchNorm, class weights)": ("tinycnn", "n_boot: 0\noptions:\n  gradcam_samples: 0\n"),
    "tinycnn-gn (GroupNorm, balance none)": (
        "tinycnn-gn",
        "n_boot: 0\nbalance: none\noptions:\n  gradcam_samples: 0\n",
    ),
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(
    tmp: Path, name: str, model: str, config: Path, data: Path, nproc: int, batch: int, args
) -> pd.DataFrame:
    out = tmp / f"{name}-{nproc}"
    common = [
        str(tmp / "entry.py"),
        "train",
        "fetal-plane",
        "--data",
        str(data),
        "--model",
        model,
        "--epochs",
        str(args.epochs),
        "--size",
        str(args.size),
        "--config",
        str(config),
        "--quiet",
        "--threads",
        "1",
        "--out",
        str(out),
        "--batch-size",
        str(batch),
    ]
    launcher = [sys.executable]
    if nproc > 1:
        launcher += [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(_port()),
        ]
    env = {**os.environ, "SONOKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(launcher + common, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    log = pd.read_csv(out / "log.csv")
    log.attrs["wall"] = time.perf_counter() - start
    log.attrs["n_train"] = int(pd.read_csv(out / "splits.csv")["split"].eq("train").sum())
    return log


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--n", type=int, default=96, help="simulated images")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16, help="global batch (each of N processes gets B/N)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    if args.batch_size % args.nproc:
        raise SystemExit("--batch-size must be divisible by --nproc")
    from sonokit.synth import make_dataset

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "entry.py").write_text(ENTRY)
        data = tmp / "fp"
        make_dataset("fetal-planes", data, n=args.n, seed=0, size=args.size)
        for i, label in enumerate(v.strip() for v in args.variants.split(",") if v.strip()):
            model, config = VARIANTS[label]
            cfg = tmp / f"c{i}.yaml"
            cfg.write_text(config)
            one = train(tmp, f"v{i}", model, cfg, data, 1, args.batch_size, args)
            many = train(tmp, f"v{i}", model, cfg, data, args.nproc, args.batch_size // args.nproc, args)
            for phase in ("train", "val"):
                a, b = (
                    one[one["phase"] == phase]["loss"].to_numpy(),
                    many[many["phase"] == phase]["loss"].to_numpy(),
                )
                rel = float(abs(a - b).max() / abs(a).max())
                rows.append(
                    {
                        "variant": label,
                        "phase": phase,
                        "1 proc losses": " ".join(f"{x:.4f}" for x in a),
                        f"{args.nproc} proc losses": " ".join(f"{x:.4f}" for x in b),
                        "max rel diff": rel,
                    }
                )
            for log, n in ((one, 1), (many, args.nproc)):
                train_s = log[log["phase"] == "train"]["seconds"].sum()
                rows.append(
                    {
                        "variant": label,
                        "phase": f"speed {n} proc",
                        "1 proc losses": f"{log.attrs['n_train'] * args.epochs / train_s:.0f} samples/s",
                        f"{args.nproc} proc losses": f"wall {log.attrs['wall']:.0f} s (incl. start-up)",
                        "max rel diff": float("nan"),
                    }
                )
    table = pd.DataFrame(rows)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, 1 torch thread per process; "
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; n={args.n}, "
        f"size {args.size}, {args.epochs} epochs, global batch {args.batch_size}"
    )
    print(table.to_markdown(index=False, floatfmt=".2e") if _has_tabulate() else table.to_string(index=False))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
