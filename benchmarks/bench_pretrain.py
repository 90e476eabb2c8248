"""Does self-supervised pretraining on unlabelled real scans help `sonokit train classify` on a real set it never saw?

For each real development set (../shared/data) a backbone is pretrained with `sonokit pretrain` (SimCLR with
ultrasound views, the classify defaults' model and size) on the unlabelled images of the OTHER real sets only:
    without-fetal    HC18 fetal heads + BUS-BRA breast images        -> evaluated on fetal_planes_subset
    without-busbra   HC18 fetal heads + fetal_planes_subset images   -> evaluated on BUS-BRA
so no image of the evaluated set, labelled or not, is seen before its folds. Then bench_real.py's `ssl` recipe
(the defaults + `--weights bench_data/pretrain/without-<set>`) runs the same patient-wise folds as its `default`
recipe, and its report compares the two with a paired patient bootstrap.

`--method supervised` pretrains on the same images with their labels instead (`sonokit pretrain --method
supervised`, one table `path,label,source`: BUS-BRA benign/malignant, the fetal subset's planes, HC18's head
circumference in quartiles), into bench_data/pretrain/sup-without-<set>; bench_real.py's recipe `sup` starts
from it. `--only all` (supervised) pretrains on every set: the backbone shipped in the package
(src/sonokit/weights, benchmarks/make_backbone.py).

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


def labelled_sources() -> dict[str, pd.DataFrame]:
    """Each real set as `path,label,source`: the labels its own README documents (HC18: head circumference
    quartile, the only label it has per image)."""
    busbra = pd.read_csv(SHARED / "busbra" / "bus_data.csv")
    hc18 = pd.read_csv(SHARED / "hc18" / "pixel_size_and_HC.csv")
    quartile = pd.qcut(hc18["head circumference (mm)"], 4, labels=["hc-q1", "hc-q2", "hc-q3", "hc-q4"])
    fetal = sorted((SHARED / "fetal_planes_subset").glob("*/*.png"))
    toshiba = busbra["Device"].str.startswith("Toshiba Aplio 300")  # bench_real.py's new-scanner set
    return {
        "busbra": pd.DataFrame(
            {"path": [str(SHARED / "busbra" / "Images" / f"{i}.png") for i in busbra["ID"]],
             "label": busbra["Pathology"], "source": "busbra"}
        ),
        "busbra-other-scanners": pd.DataFrame(
            {"path": [str(SHARED / "busbra" / "Images" / f"{i}.png") for i in busbra["ID"][~toshiba]],
             "label": busbra["Pathology"][~toshiba], "source": "busbra"}
        ),
        "hc18": pd.DataFrame(
            {"path": [str(SHARED / "hc18" / "images" / f) for f in hc18["filename"]],
             "label": quartile.astype(str), "source": "hc18"}
        ),
        "fetal": pd.DataFrame({"path": [str(p) for p in fetal], "label": [p.parent.name for p in fetal],
                               "source": "fetal"}),
    }  # fmt: skip


def simulated_planes(n: int = 1200, size: int = 160) -> pd.DataFrame:
    """`sonokit synth fetal-planes` images (made once, seed 0) as `path,label,source` (label = the plane)."""
    from sonokit.synth import make_dataset

    folder = OUT / "sim-fetal-planes"
    if not (folder / "FETAL_PLANES_DB_data.csv").is_file():
        make_dataset("fetal-planes", folder, n=n, seed=0, size=size)
    meta = pd.read_csv(folder / "FETAL_PLANES_DB_data.csv", sep=";")
    return pd.DataFrame(
        {"path": [str(folder / "Images" / f"{i}.png") for i in meta["Image_name"]], "label": meta["Plane"],
         "source": "sim-fetal"}
    )  # fmt: skip


# each backbone and the sets it learns from: never the set it is evaluated on
PLAN = {
    "without-fetal": ("hc18", "busbra"),
    "without-busbra": ("hc18", "fetal"),
    "without-busbra-toshiba": ("hc18", "fetal", "busbra-other-scanners"),
    "without-fetal-plus-sim": ("hc18", "busbra", "sim-fetal"),
    "sim-fetal-only": ("sim-fetal",),
    "all": ("hc18", "busbra", "fetal"),  # the shipped backbone (real sets only)
}


def run_folder(plan: str, supervised: bool, model: str = "tinycnn") -> Path:
    """bench_data/pretrain/[sup-]<plan>[-<model>]: tinycnn's folders keep their names from before --model."""
    name = f"sup-{plan}" if supervised else plan
    return OUT / (name if model == "tinycnn" else f"{name}-{model}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=list(PLAN), action="append")
    parser.add_argument("--method", choices=["simclr", "supervised"], default="simclr")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-3 simclr, 3e-3 supervised")
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--model", default="tinycnn", help="backbone; any other than tinycnn adds -MODEL to the folder name"
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: the shared real data is needed (set SONOKIT_SHARED)")
    supervised = args.method == "supervised"
    lr = args.lr or (3e-3 if supervised else 1e-3)
    tables = labelled_sources()
    rows = []
    for name, parts in PLAN.items():
        if (args.only and name not in args.only) or (
            not args.only and name in ("all", "without-busbra-toshiba")
        ):
            continue
        out = run_folder(name, supervised, args.model)
        name = out.name
        table = OUT / f"{name}.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        if "sim-fetal" in parts and "sim-fetal" not in tables:
            tables["sim-fetal"] = simulated_planes()
        rows_of = pd.concat([tables[p] for p in parts], ignore_index=True)
        (rows_of if supervised else rows_of[["path"]]).to_csv(table, index=False)
        cfg = PretrainConfig(
            data=[str(table)], out=str(out), method=args.method, model=args.model, epochs=args.epochs,
            batch_size=args.batch_size,
            lr=lr, stop_after=args.stop_after, resume=(out / CHECKPOINT_FILE).is_file(),
        )  # fmt: skip
        pretrain(cfg)
        card = json.loads((out / CARD_FILE).read_text())
        losses = card["loss_per_epoch"]
        rows.append((name, card["files"], card["epochs_done"], losses[0], losses[-1], card["seconds"] / 60))
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print(
        f"| backbone | {'labelled' if supervised else 'unlabelled'} images | epochs | loss first -> last | minutes |"
    )
    print("|---|---|---|---|---|")
    for name, n, epochs, first, last, minutes in rows:
        print(f"| {name} | {n} | {epochs} | {first:.3f} -> {last:.3f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
