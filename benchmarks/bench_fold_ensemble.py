"""Predicting with every fold of a cross-validation vs with one fold, on images no fold has seen (issue #18).

`sonokit predict CV_FOLDER` averages the folds' networks (sonokit.models.ensemble). Its gain cannot be read from
the cross-validation itself (every image trained some fold), so BUS-BRA's official fold 5 (383 images) is held out
and `sonokit train classify --folds 4 --fold-col fold` (the defaults) runs on folds 1-4. Each fold's run and the
CV folder then predict the held-out fold. Rows: each fold alone, the ensemble; metrics with a 95% CI from a
bootstrap over patients, and the ensemble minus each fold by a paired patient bootstrap.

Needs bench_real.py's BUS-BRA table (`python benchmarks/bench_real.py --only floors` writes it). Resumable: a
finished CV run is reused, a killed fold resumes from its checkpoint.

    python benchmarks/bench_fold_ensemble.py                  # train (about 25 min on 2 cores) and report
    python benchmarks/bench_fold_ensemble.py --only report    # the table from what has run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench_real import METRICS, _encode, fold_metrics, paired_difference
from sonokit.core.config import resolve_config
from sonokit.evaluate.metrics import classification_metrics
from sonokit.predict import Predictor
from sonokit.tasks import get_task
from sonokit.train.engine import train

ROOT = Path(__file__).resolve().parents[1]


def split_table(table: Path, out: Path, test_fold: int) -> tuple[Path, pd.DataFrame]:
    df = pd.read_csv(table)
    out.mkdir(parents=True, exist_ok=True)
    train_csv = out / "train.csv"
    df[df["fold"] != test_fold].to_csv(train_csv, index=False)
    return train_csv, df[df["fold"] == test_fold].reset_index(drop=True)


def run_cv(train_csv: Path, cv_dir: Path, folds: int) -> Path:
    """`sonokit train classify --data train.csv --out cv --folds K --fold-col fold`, resumed when begun."""
    overrides = {"data": str(train_csv), "out": str(cv_dir), "folds": folds, "fold_col": "fold"}
    overrides["resume"] = (cv_dir / "config.yaml").is_file()
    cfg = resolve_config("classify", overrides=overrides, task_defaults=get_task("classify").defaults)
    return cv_dir if (cv_dir / "metrics_cv.json").is_file() else train(cfg)


def probabilities(predictor: Predictor, test: pd.DataFrame, classes: list[str]) -> np.ndarray:
    table, errors = predictor.table(list(test["path"]))
    if errors:
        raise SystemExit("; ".join(errors))
    by_path = table.set_index("path")
    return by_path.loc[test["path"].astype(str), [f"p_{c}" for c in classes]].to_numpy(float)


def report(cv_dir: Path, test: pd.DataFrame, n_boot: int) -> list[str]:
    ensemble = Predictor.load(cv_dir, "cpu")
    classes = list(ensemble.run.task.classes)
    y = _encode(test["label"], classes)
    groups = test["group"].astype(str).to_numpy()
    rows = {
        f"{d.name} alone": probabilities(Predictor.load(d, "cpu"), test, classes)
        for d in sorted(cv_dir.glob("fold_*"))
    }
    rows["ensemble of the folds"] = probabilities(ensemble, test, classes)
    lines = [
        f"held-out BUS-BRA fold: {len(test)} images, {test['group'].nunique()} patients; {n_boot} patient resamples",
        "",
        "| predictor | accuracy [95% CI] | macro-F1 [95% CI] | AUROC [95% CI] |",
        "|---|---|---|---|",
    ]
    for name, p in rows.items():
        m = classification_metrics(y, p, classes, n_boot, 0, groups)
        cells = [
            f"{m[k]:.3f} [{m[f'{k}_ci95'][0]:.3f}, {m[f'{k}_ci95'][1]:.3f}]"
            for k in ("accuracy", "macro_f1", "auroc")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "ensemble minus each fold (paired patient bootstrap, 95% CI):", ""]
    lines += ["| fold | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    ens = rows["ensemble of the folds"]
    for name, p in rows.items():
        if name != "ensemble of the folds":
            diff = paired_difference(ens, p, y, groups, n_boot)
            lines.append(
                f"| {name} | "
                + " | ".join(f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" for d in (diff[m] for m in METRICS))
                + " |"
            )
    singles = np.array(
        [
            [fold_metrics(y, p, len(classes))[m] for m in METRICS]
            for n, p in rows.items()
            if n != "ensemble of the folds"
        ]
    )
    lines += [
        "",
        "mean of the single folds: "
        + ", ".join(f"{m} {v:.3f}" for m, v in zip(METRICS, singles.mean(0), strict=True)),
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=ROOT / "bench_data" / "real" / "busbra" / "table.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_data" / "fold_ensemble")
    ap.add_argument("--test-fold", type=int, default=5)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--only", choices=("train", "report"))
    args = ap.parse_args()
    if not args.table.is_file():
        raise SystemExit(
            f"{args.table}: run `python benchmarks/bench_real.py --only floors` first (it writes it)"
        )
    train_csv, test = split_table(args.table, args.out, args.test_fold)
    cv_dir = args.out / "cv"
    if args.only != "report":
        run_cv(train_csv, cv_dir, args.folds)
    if args.only != "train":
        print("\n".join(report(cv_dir, test, args.n_boot)))


if __name__ == "__main__":
    main()
