"""Mirrored test-time augmentation on bench_real.py's saved fold models: does averaging an image's and its mirror's
probabilities help on real ultrasound? (issue #18 lists test-time augmentation among the recipe's candidates.)

Each fold's run predicts its own held-out images twice, as trained and with every image mirrored left-right too
(the mean of the two softmax outputs); the out-of-fold predictions of all folds are pooled and compared paired
(same images, patients resampled), as bench_real.py compares recipes. Inference only: a minute or two per set.

    python benchmarks/bench_tta.py --out bench_data/real_s21 --dataset busbra --recipe default --recipe rn10w32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench_real import METRICS, _encode, fold_metrics, paired_difference
from sonokit.predict import Predictor


class MirrorMean(nn.Module):
    """The network's class scores averaged over the image and its left-right mirror (log of the mean softmax)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log((self.net(x).softmax(1) + self.net(x.flip(-1)).softmax(1)) / 2)


def out_of_fold(root: Path, table: pd.DataFrame, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled held-out probabilities of every fold of `root`, without and with the mirror."""
    row_of = {p: i for i, p in enumerate(table["path"].astype(str))}
    plain, mirrored = (np.full((len(table), len(classes)), np.nan) for _ in range(2))
    cols = [f"p_{c}" for c in classes]
    for fold in sorted(root.glob("fold_*")):
        paths = pd.read_csv(fold / "predictions_test.csv")["path"].astype(str).tolist()
        predictor = Predictor.load(fold, device="cpu")
        for probs, net in ((plain, predictor.run.model), (mirrored, MirrorMean(predictor.run.model).eval())):
            predictor.run.model = net
            preds, errors = predictor.table(paths)
            if errors:
                raise SystemExit(f"{fold}: {errors[0]}")
            probs[preds["path"].astype(str).map(row_of).to_numpy()] = preds[cols].to_numpy(float)
    return plain, mirrored


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench_data/real"), help="bench_real.py's --out")
    parser.add_argument(
        "--dataset", action="append", default=None, help="default: fetal, busbra-toshiba, busbra"
    )
    parser.add_argument(
        "--recipe", action="append", default=None, help="recipe folders to score (default: default)"
    )
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| set | recipe | "
        + " | ".join(f"{m} plain -> mirrored [95% CI of the change]" for m in METRICS)
        + " |"
    )
    print("|---|---|" + "---|" * len(METRICS))
    for name in args.dataset or ["fetal", "busbra-toshiba", "busbra"]:
        table = pd.read_csv(args.out / name / "table.csv")
        groups = table["group"].astype(str).to_numpy()
        for recipe in args.recipe or ["default"]:
            root = args.out / name / recipe
            if not (root / "fold_0" / "predictions_test.csv").is_file():
                print(f"| {name} | {recipe} | not run |")
                continue
            head = pd.read_csv(root / "fold_0" / "predictions_test.csv", nrows=1).columns
            classes = [c[2:] for c in head if c.startswith("p_")]  # the run's class order
            y = _encode(table["label"], classes)
            plain, mirrored = out_of_fold(root, table, classes)
            seen = ~np.isnan(plain).any(1)
            a, b = mirrored[seen], plain[seen]
            diff = paired_difference(a, b, y[seen], groups[seen], args.n_boot)
            before, after = fold_metrics(y[seen], b, len(classes)), fold_metrics(y[seen], a, len(classes))
            cells = [
                f"{before[m]:.3f} -> {after[m]:.3f} [{diff[m][1]:+.3f}, {diff[m][2]:+.3f}]" for m in METRICS
            ]
            print(f"| {name} | {recipe} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
