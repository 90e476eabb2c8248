"""Does self-supervised pretraining on unlabelled real scans help `sonokit train classify` on a real set it never saw?

For each real development set (../shared/data) a backbone is pretrained with `sonokit pretrain` (SimCLR with
ultrasound views, the classify defaults' model and size) on the unlabelled images of the OTHER real sets only:
    without-fetal    HC18 fetal heads + BUS-BRA breast images        -> evaluated on fetal_planes_subset
    without-busbra   HC18 fetal heads + fetal_planes_subset images   -> evaluated on BUS-BRA
so no image of the evaluated set, labelled or not, is seen before its folds. Then bench_real.py's `ssl` recipe
(the defaults + `--weights bench_data/pretrain/without-<set>`) runs the same patient-wise folds as its `default`
recipe, and its report compares the two with a paired patient bootstrap.

Runnable in pieces (a stopped pretraining resumes to the same weights):
    python benchmarks/bench_pretrain.py                                   # pretrain both backbones (30 epochs)
    python benchmarks/bench_pretrain.py --only without-fetal --stop-after 10
    python benchmarks/bench_real.py --only cnn --dataset fetal --recipe default --recipe ssl
    python benchmarks/bench_real.py --only report --dataset fetal
Prints a table of each backbone's data, epochs, loss at the first and last epoch, and minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import pandas as pd
import torch

from sonokit.pretrain import PretrainConfig, pretrain
from sonokit.pretrain.run import CARD_FILE, CHECKPOINT_FILE

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SONOKIT_SHARED", ROOT.parent / "shared")) / "data"
OUT = ROOT / "bench_data" / "pretrain"


def sources() -> dict[str, list[Path]]:
    hc18 = sorted(p for p in (SHARED / "hc18" / "images").glob("*.png") if "Annotation" not in p.name)
    busbra = sorted((SHARED / "busbra" / "Images").glob("*.png"))
    fetal = sorted((SHARED / "fetal_planes_subset").glob("*/*.png"))
    return {"without-fetal": hc18 + busbra, "without-busbra": hc18 + fetal}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["without-fetal", "without-busbra"], action="append")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: the shared real data is needed (set SONOKIT_SHARED)")
    rows = []
    for name, files in sources().items():
        if args.only and name not in args.only:
            continue
        out = OUT / name
        table = OUT / f"{name}.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"path": [str(p) for p in files]}).to_csv(table, index=False)
        cfg = PretrainConfig(
            data=[str(table)], out=str(out), epochs=args.epochs, batch_size=args.batch_size,
            stop_after=args.stop_after, resume=(out / CHECKPOINT_FILE).is_file(),
        )  # fmt: skip
        pretrain(cfg)
        card = json.loads((out / CARD_FILE).read_text())
        losses = card["loss_per_epoch"]
        rows.append((name, card["files"], card["epochs_done"], losses[0], losses[-1], card["seconds"] / 60))
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| backbone | unlabelled images | epochs | loss first -> last | minutes |")
    print("|---|---|---|---|---|")
    for name, n, epochs, first, last, minutes in rows:
        print(f"| {name} | {n} | {epochs} | {first:.3f} -> {last:.3f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
