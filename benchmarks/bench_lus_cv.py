"""A whole 5-fold `sonokit train lus` run with the defaults on a BLUS-sized set, timed end to end on this machine.

The question: can a hospital's CPU train the lung score on a real-sized set of cines? The set is blus_like.py's
(360 MP4 cines 350x350x100 at 25 fps, 60 patients; made once, about 2 minutes). In one run it prints:
    - the old read path's training-loader frames/s beside the preprocessed cache's (bench_loader.py's measure),
      and the share of a cached epoch spent loading data;
    - the wall time of `sonokit train lus --data table.csv --folds 5 --group-col group` exactly as a user runs
      it, starting from an empty cache (the cache build is part of the time), and the epochs each fold ran.
Runnable in pieces: an interrupted training run is continued with --resume on the next call.

    python benchmarks/bench_lus_cv.py                      # about 15 minutes on 2 cores
    python benchmarks/bench_lus_cv.py --skip-loader        # only the 5-fold run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from blus_like import make_blus_like


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("bench_data"))
    parser.add_argument("--out", type=Path, default=Path("bench_data/runs/lus_cv"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--skip-loader", action="store_true", help="skip the old-vs-cached loader measurement"
    )
    args = parser.parse_args()
    table = make_blus_like(args.data_dir / "blus_like")

    loader = None
    if not args.skip_loader:
        from bench_loader import bench

        with tempfile.TemporaryDirectory(prefix="sonokit-bench-lus-") as tmp:
            loader = bench("lus", str(table), Path(tmp), old_seconds=30.0, workers=0)

    cache = args.data_dir / "cache_lus_cv"
    resume = (args.out / "config.yaml").exists() or any(args.out.glob("fold_*"))
    if not resume:
        shutil.rmtree(cache, ignore_errors=True)  # time the whole run, cache build included
    cmd = [
        sys.executable, "-m", "sonokit.cli.main", "train", "lus", "--data", str(table), "--out", str(args.out),
        "--folds", str(args.folds), "--group-col", "group", "--quiet",
    ] + (["--resume"] if resume else [])  # fmt: skip
    env = {**os.environ, "SONOKIT_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - start

    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"load after {os.getloadavg()[0]:.2f}\n"
    )
    if loader:
        print("| read path | training-loader frames/s |\n|---|---|")
        print(f"| old (decode on a miss, LRU of 8 cines) | {loader['old']:.1f} |")
        print(f"| preprocessed cache, first epoch (building) | {loader['first']:.0f} |")
        print(f"| preprocessed cache, cached | {loader['cached']:.0f} |")
        data_s, read_s, epoch_s = loader["epoch_s"] - loader["compute_s"], loader["read_s"], loader["epoch_s"]
        print(
            f"\ncached epoch: {epoch_s:.1f} s, of which {data_s:.1f} s ({100 * loader['share']:.1f}%) reading, "
            f"augmenting and collating (the epoch minus its training steps run on batches already in memory); "
            f"reading and collating alone {read_s:.1f} s ({100 * read_s / epoch_s:.1f}%)\n"
        )
    print("| fold | epochs run | seconds (sum of log.csv) | test accuracy | test macro-F1 | video accuracy |")
    print("|---|---|---|---|---|---|")
    for fold in sorted(args.out.glob("fold_*")):
        log = pd.read_csv(fold / "log.csv")
        metrics = json.loads((fold / "metrics_test.json").read_text())
        print(
            f"| {fold.name} | {int(log['epoch'].max()) + 1} | {log['seconds'].sum():.0f} | "
            f"{metrics.get('accuracy', float('nan')):.3f} | {metrics.get('macro_f1', float('nan')):.3f} | "
            f"{metrics.get('video_accuracy', float('nan')):.3f} |"
        )
    verb = "continued" if resume else "from an empty cache"
    print(
        f"\nwhole `sonokit train lus --folds {args.folds}` run ({verb}): {wall / 60:.1f} min (floor: 15 min)"
    )


if __name__ == "__main__":
    main()
