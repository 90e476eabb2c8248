"""EF accuracy of the fast path against EchoNet-Dynamic's R(2+1)D all-clips reference, trained and tested in one run.

Both models go through the same engine with the same recipe (synthetic EchoNet-format data, epochs, AdamW lr,
batch, seed, augmentation, no pretrained weights) and are scored on the same test videos:

    two-stream      sonokit's default EF model: 16 frames every 4th, a clip every 16 frames at test time
    r2plus1d_18     EchoNet-Dynamic's network and protocol: 32 frames every 2nd; training draws about one
                    clip per video per epoch (a window of --ref-train-stride frames), test averages a clip
                    starting at every frame (--ref-test-stride 1)

The table gives MAE with its bootstrap 95% CI, RMSE, r2, the training-mean predictor, wall time, and the paired
difference of the per-video absolute errors (fast minus reference, bootstrap CI over videos): an upper CI bound
at or below 0 means "no worse". On a 2-core CPU `--amp bf16` (AMX) makes the reference trainable at all.

    python benchmarks/bench_ef_accuracy.py --n 160 --epochs 8 --amp bf16 --out bench_ef_accuracy.md
    python benchmarks/bench_ef_accuracy.py --data synth_echo --device cuda --epochs 30
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonokit.core.config import resolve_config
from sonokit.core.loop import amp_dtype
from sonokit.core.run import load_run, split_index
from sonokit.evaluate.bootstrap import bootstrap_ci
from sonokit.evaluate.runner import evaluate_items
from sonokit.tasks import get_task
from sonokit.train.engine import train
from sonokit.utils import atomic_write_text


@dataclass
class Variant:
    label: str
    model: str
    options: dict
    test_stride: int
    lr: float


def variants(args: argparse.Namespace) -> list[Variant]:
    fast = Variant(f"{args.fast_model} (sonokit)", args.fast_model, {}, 16, args.lr)
    ref = Variant(
        "r2plus1d_18, all clips (EchoNet-Dynamic reference)",
        "r2plus1d_18",
        {"frames": 32, "period": 2, "clip_stride": args.ref_train_stride},
        args.ref_test_stride,
        args.ref_lr or args.lr,
    )
    return [fast, ref]


def train_variant(v: Variant, args: argparse.Namespace, data: str, out: Path) -> tuple[Path, float]:
    """Train (or with --reuse keep a finished run in `out`); returns the run folder and its training seconds."""
    if args.reuse and (out / "model.safetensors").is_file():
        return out, float(pd.read_csv(out / "log.csv")["seconds"].sum())
    overrides = {
        "data": data,
        "out": str(out),
        "model": v.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": v.lr,
        "size": 112,
        "seed": args.seed,
        "patience": 0,
        "device": args.device,
        "threads": args.threads,
        "amp": args.amp,
        "channels_last": args.amp == "bf16" or args.device.startswith("cuda"),
        "n_boot": 0,
        "options": v.options,
    }
    cfg = resolve_config("ef", overrides=overrides, task_defaults=get_task("ef").defaults)
    start = time.perf_counter()
    run_dir = train(cfg)
    return run_dir, time.perf_counter() - start


def test_variant(v: Variant, run_dir: Path, args: argparse.Namespace) -> tuple[dict, pd.DataFrame, float]:
    """Metrics of the run's test split under the variant's all-clips stride, and seconds per test video."""
    run = load_run(run_dir, args.device)
    task = run.task
    task.opts = task.opts.model_copy(update={"clip_stride": v.test_stride})
    index, _ = split_index(run)
    items = task.expand(index[index["split"] == "test"])
    start = time.perf_counter()
    metrics = evaluate_items(
        task, run.model, items, "test_bench", run_dir, run.device, amp_dtype(task.cfg, run.device),
        n_boot=args.n_boot,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    preds = pd.read_csv(run_dir / "predictions_test_bench.csv")
    videos = preds[preds["frame"].astype(str) == "all"].set_index("path")
    return metrics, videos, seconds / max(1, metrics["n_videos"])


def paired_difference(fast: pd.DataFrame, ref: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, tuple]:
    """Mean over shared test videos of |fast error| - |ref error|, with its bootstrap 95% CI."""
    both = fast.merge(ref, left_index=True, right_index=True, suffixes=("_f", "_r"))
    diff = (both["y_pred_f"] - both["y_true_f"]).abs() - (both["y_pred_r"] - both["y_true_r"]).abs()
    d = diff.to_numpy(float)
    return float(d.mean()), bootstrap_ci(np.mean, d, n_boot=n_boot, seed=seed)


def _ci(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci95")
    return f"{m[key]:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{m[key]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="an EchoNet-format folder (default: simulate --n videos)")
    parser.add_argument("--n", type=int, default=160, help="simulated videos (75/12.5/12.5 split)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--amp", default="off", choices=("off", "bf16"))
    parser.add_argument("--fast-model", default="two-stream")
    parser.add_argument("--ref-train-stride", type=int, default=64)
    parser.add_argument("--ref-test-stride", type=int, default=1)
    parser.add_argument("--ref-lr", type=float, help="the reference's learning rate (default: --lr)")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs found in --work")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument(
        "--work", type=Path, help="keep the data and run folders here (default: a temp folder)"
    )
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data = args.data
        if data is None:
            from sonokit.synth import make_dataset

            data = str(work / "echo")
            if not Path(data).exists():
                make_dataset("echo", data, n=args.n, seed=args.seed, size=112)
        rows, videos = [], {}
        for v in variants(args):
            run_dir, train_s = train_variant(v, args, data, work / v.model)
            metrics, per_video, s_video = test_variant(v, run_dir, args)
            params = json.loads((run_dir / "model_card.json").read_text())["architecture"].get("params")
            videos[v.model] = per_video
            rows.append((v, metrics, train_s, s_video, params))
            print(f"{v.label}: MAE {_ci(metrics, 'mae')}, trained in {train_s:.0f} s", flush=True)
        fast, ref = (videos[v.model] for v in variants(args))
        diff, diff_ci = paired_difference(fast, ref, args.n_boot, args.seed)

    load = os.getloadavg()
    lines = [
        f"EF accuracy on synthetic EchoNet-format data ({'given' if args.data else f'{args.n} simulated'} videos), "
        f"both trained {args.epochs} epochs from scratch, lr {args.lr} (reference {args.ref_lr or args.lr}), "
        f"batch {args.batch_size}, amp "
        f"{args.amp}, seed {args.seed}, device {args.device}, {args.threads} threads, load {load[0]:.1f}",
        "",
        "| model | params | test protocol | test videos | MAE [95% CI] | RMSE | r2 | training-mean MAE | "
        "train (s) | test s/video |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v, m, train_s, s_video, params in rows:
        lines.append(
            f"| {v.label} | {params} | {m['protocol']} | {m['n_videos']} | {_ci(m, 'mae')} | {m['rmse']:.2f} "
            f"| {m['r2']:.3f} | {m['baseline_mae']:.2f} | {train_s:.0f} | {s_video:.2f} |"
        )
    ci_text = f"[{diff_ci[0]:+.2f}, {diff_ci[1]:+.2f}]" if diff_ci else "n/a"
    if not diff_ci:
        verdict = "too few videos for a CI"
    elif diff_ci[1] < 0:
        verdict = "fast path more accurate (CI below 0)"
    elif diff_ci[0] > 0:
        verdict = "fast path less accurate (CI above 0)"
    else:
        verdict = "no difference shown (CI spans 0)"
    lines += [
        "",
        f"paired |error| difference, fast minus reference: {diff:+.2f} EF points {ci_text} -> {verdict}",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + "\n")


if __name__ == "__main__":
    main()
