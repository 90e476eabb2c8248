"""Real ultrasound, end to end: `sonokit train classify` against simple floors on the same patient-wise folds.

Every headline number elsewhere is on simulated data; this asks how the classify recipe does on real scans, and
whether it beats what a pixel-level classifier gets for free. Two real development sets (../shared/data):

- BUS-BRA (breast, benign vs malignant, 1,875 images of 1,064 patients): a path,label,group,fold table is built
  from bus_data.csv (label = Pathology, group = Case) and the authors' patient-wise 5-fold-cv.csv (fold = kFold);
  the CNN runs take these folds with `--fold-col fold`, the floors use the same rows.
- fetal_planes_subset (120 images, 6 planes): group = the patient number in the file name; 5 folds drawn by
  stratified group k-fold (seed 0), exactly the folds `sonokit train classify --folds 5` draws.
- busbra-toshiba (`--dataset busbra-toshiba`): BUS-BRA's 139 Toshiba Aplio 300 images (72 patients) alone, 5 folds
  drawn like the fetal set: a small labelled set from a scanner that a backbone pretrained on BUS-BRA's other
  scanners never saw (bench_pretrain.py's sup-without-busbra-toshiba), as a clinic with its own machine brings.

Rows of each table: (a) the majority class; (b) logistic regression and a random forest (scikit-learn) on
letterboxed grey pixels at 16x16 and 32x32 (sonokit's own letterbox, via the preprocessed-frame cache); (c)
`sonokit train classify` with its current defaults; (d) candidate recipes (RECIPES below), full or on a subset of
folds as a quick screen. Metrics per held-out fold (accuracy, macro-F1, AUROC), mean +- SD over folds, and the
pooled out-of-fold predictions with a 95% CI from a bootstrap that resamples patients; recipes are compared with
the defaults by a paired patient bootstrap on the same folds. Wall time: seconds per fold of the fit (setup,
epochs, final evaluation), measured here.

Runnable in pieces; finished folds are reused (a killed fold resumes from its checkpoint):

    python benchmarks/bench_real.py --only floors                     # seconds
    python benchmarks/bench_real.py --only cnn                        # classify defaults, both sets
    python benchmarks/bench_real.py --only cnn --dataset busbra --recipe tiny-128 --run-folds 0,1   # a screen
    python benchmarks/bench_real.py --time-epoch tiny-128,mnv3s-128   # seconds per training epoch, no runs
    python benchmarks/bench_real.py --only report                     # tables from what has run

Each CNN row prints the equivalent command, e.g. `sonokit train classify --data TABLE --folds 5 --fold-col fold
--init none`: the backbone shipped in the package was trained on these very sets, so every recipe here starts from
random weights, or from a backbone pretrained on the OTHER sets only (recipes `ssl`, `sup`; bench_pretrain.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sonokit.core.config import TrainConfig, resolve_config
from sonokit.evaluate.metrics import accuracy, auroc_ovr, classification_metrics, macro_f1
from sonokit.tasks import get_task
from sonokit.train.cv import fold_index, fold_indices
from sonokit.train.engine import fit
from sonokit.utils import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
METRICS = ("accuracy", "macro_f1", "auroc")
ISSUE_FLOORS = {"accuracy": 0.85, "macro_f1": 0.82, "auroc": 0.90}  # issue #18, BUS-BRA 5-fold by patient


@dataclass
class Recipe:
    """A named change to the classify defaults: config options as `--set KEY=VALUE` would give them."""

    what: str
    sets: dict[str, Any] = field(default_factory=dict)

    def flags(self) -> str:
        return " ".join(f"--set {k}={_yaml(v)}" for k, v in _flatten(self.sets).items())


# Generic choices only (backbone, input size, schedule, augmentation strength, loss): nothing here may know
# that the images are breasts; the recipe has to carry over to the real sets held aside.
RECIPES: dict[str, Recipe] = {
    "default": Recipe("`sonokit train classify` defaults (src/sonokit/configs/classify.yaml)"),
    "old-default": Recipe(
        "the defaults before 2026-12-04: 15 epochs, early stopping after 5 without gain, no min_steps",
        {"epochs": 15, "patience": 5},
    ),
    "min-steps-300": Recipe(
        "the old defaults (15 epochs, patience 5) + at least 300 optimizer steps",
        {"epochs": 15, "patience": 5, "min_steps": 300},
    ),
    "tiny-128": Recipe("tinycnn, input 128", {"size": 128}),
    "tiny-160": Recipe("tinycnn, input 160", {"size": 160}),
    "tiny-e30": Recipe("tinycnn, input 96, 30 epochs, patience 8", {"epochs": 30, "patience": 8}),
    "tiny-128-e30": Recipe(
        "tinycnn, input 128, 30 epochs, patience 8", {"size": 128, "epochs": 30, "patience": 8}
    ),
    "tiny-e100": Recipe("tinycnn, input 96, 100 epochs, no early stopping", {"epochs": 100, "patience": 0}),
    "tiny-e30-p0": Recipe("tinycnn, input 96, 30 epochs, no early stopping", {"epochs": 30, "patience": 0}),
    "tiny-s600": Recipe("defaults + at least 600 optimizer steps", {"min_steps": 600}),
    "tiny-s1500": Recipe("defaults + at least 1500 optimizer steps", {"min_steps": 1500}),
    "tiny-128-ls": Recipe("tinycnn, input 128, label smoothing 0.1", {"size": 128, "label_smoothing": 0.1}),
    "tiny-128-aug": Recipe(
        "tinycnn, input 128, stronger geometry (rotation 20, translate 0.15, zoom 0.8-1.25)",
        {"size": 128, "augment": {"rotation_deg": 20.0, "translate": 0.15, "zoom": [0.8, 1.25]}},
    ),
    "tiny-128-lr2e-3": Recipe("tinycnn, input 128, lr 0.002", {"size": 128, "lr": 0.002}),
    "ls": Recipe("defaults + label smoothing 0.1", {"label_smoothing": 0.1}),
    "drop": Recipe("defaults + dropout 0.3 before the linear head", {"dropout": 0.3}),
    "lr2e-3": Recipe("defaults at lr 0.002", {"lr": 0.002}),
    "app": Recipe(
        "defaults + scanner-look restyling (augment.appearance 1.0: grey curve, gain, TGC, speckle, blur, noise)",
        {"augment": {"appearance": 1.0}},
    ),
    "ema": Recipe("defaults + a moving average of the weights (ema 0.99) validated and kept", {"ema": 0.99}),
    "app-0.5": Recipe("defaults + augment.appearance 0.5", {"augment": {"appearance": 0.5}}),
    "hflip": Recipe("defaults + mirrored training images (augment.hflip)", {"augment": {"hflip": True}}),
    "mnv3s-128": Recipe(
        "mobilenetv3_small, input 128, lr 0.002", {"model": "mobilenetv3_small", "size": 128, "lr": 0.002}
    ),
    "resnet18-128": Recipe("resnet18, input 128, lr 0.001", {"model": "resnet18", "size": 128, "lr": 0.001}),
    "effb0-128": Recipe(
        "efficientnet_b0, input 128, lr 0.002", {"model": "efficientnet_b0", "size": 128, "lr": 0.002}
    ),
    # the defaults started from a backbone that `sonokit pretrain` learnt without labels on the OTHER real sets
    # (never on the one evaluated): benchmarks/bench_pretrain.py writes bench_data/pretrain/without-<dataset>
    "tinycnn": Recipe(
        "the defaults before 2026-12-05: tinycnn (4 conv blocks, 0.1M parameters)", {"model": "tinycnn"}
    ),
    "rn10w32": Recipe(
        "resnet10_w32 (timm ResNet-10 layout, widths 32-256), input 96", {"model": "resnet10_w32"}
    ),
    "rn10w32-lr2e-3": Recipe("resnet10_w32, input 96, lr 0.002", {"model": "resnet10_w32", "lr": 0.002}),
    "rn10w32-128": Recipe("resnet10_w32, input 128", {"model": "resnet10_w32", "size": 128}),
    "rn10w32-160": Recipe("resnet10_w32, input 160", {"model": "resnet10_w32", "size": 160}),
    "rn10w32-auroc": Recipe(
        "resnet10_w32, the epoch kept by validation AUROC (smoother than macro-F1 on a small split)",
        {"model": "resnet10_w32", "monitor": "auroc"},
    ),
    "rn10w32-bs16": Recipe(
        "resnet10_w32, batch 16 (twice the optimizer steps)", {"model": "resnet10_w32", "batch_size": 16}
    ),
    "rn10w32-wd0.005": Recipe(
        "resnet10_w32, weight decay 0.005 (it underfits)", {"model": "resnet10_w32", "weight_decay": 0.005}
    ),
    "rn10w32-loss": Recipe(
        "resnet10_w32, the epoch kept by validation loss", {"model": "resnet10_w32", "monitor": "loss"}
    ),
    "rn10w32-noaug": Recipe(
        "resnet10_w32 without any training augmentation (does it fit its training images?)",
        {"model": "resnet10_w32", "augment": {"enabled": False}},
    ),
    "rn10w32-sgd": Recipe(
        "resnet10_w32, SGD with Nesterov momentum, lr 0.05, L2 5e-4",
        {"model": "resnet10_w32", "optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0005},
    ),
    "rn10w32-mixup": Recipe(
        "resnet10_w32 + mixup (alpha 0.2)", {"model": "resnet10_w32", "options": {"mixup": 0.2}}
    ),
    "rn10w32-mixup-e60": Recipe(
        "resnet10_w32 + mixup (alpha 0.2), 60 epochs",
        {"model": "resnet10_w32", "options": {"mixup": 0.2}, "epochs": 60},
    ),
    "rn10w32-mixup0.4": Recipe(
        "resnet10_w32 + mixup (alpha 0.4)", {"model": "resnet10_w32", "options": {"mixup": 0.4}}
    ),
    "rn10w32-mixup-bs16": Recipe(
        "resnet10_w32 + mixup (alpha 0.2), batch 16",
        {"model": "resnet10_w32", "options": {"mixup": 0.2}, "batch_size": 16},
    ),
    # the same two recipes with another seed (initial weights, data order, augmentation draws): on 120-139 images
    # a recipe's score moves by several points between seeds, which the paired CI (over patients) does not show
    "rn10w32-seed1": Recipe("resnet10_w32, seed 1", {"model": "resnet10_w32", "seed": 1}),
    "rn10w32-mixup0.4-seed1": Recipe(
        "resnet10_w32 + mixup (alpha 0.4), seed 1",
        {"model": "resnet10_w32", "options": {"mixup": 0.4}, "seed": 1},
    ),
    "rn10w32-e60": Recipe("resnet10_w32, input 96, 60 epochs", {"model": "resnet10_w32", "epochs": 60}),
    "rn10w16": Recipe(
        "resnet10_w16 (timm ResNet-10 layout, widths 16-128), input 96", {"model": "resnet10_w16"}
    ),
    "ssl": Recipe(
        "defaults + `--weights` from `sonokit pretrain` on the other real sets (bench_pretrain.py)",
        {"weights": "{pretrained_without_dataset}"},
    ),
    "sup": Recipe(
        "defaults + `--weights` from `sonokit pretrain --method supervised` on the other real sets' labels",
        {"weights": "{supervised_without_dataset}"},
    ),
    "sup-sim": Recipe(
        "`sup` with 1,200 simulated fetal planes added to the pretraining",
        {"weights": "{supervised_plus_sim}"},
    ),
    "sup-simonly": Recipe(
        "defaults + `--weights` pretrained on 1,200 simulated fetal planes only",
        {"weights": "{supervised_sim_only}"},
    ),
    "sup-lr1e-3": Recipe(
        "`sup` fine-tuned at lr 0.001", {"weights": "{supervised_without_dataset}", "lr": 0.001}
    ),
    "rn10w32-sup": Recipe(
        "resnet10_w32 from `sonokit pretrain --method supervised --model resnet10_w32` on the other sets' labels",
        {"model": "resnet10_w32", "weights": "{supervised_without_dataset_rn10w32}"},
    ),
    "rn10w32-sup-lr1e-3": Recipe(
        "`rn10w32-sup` fine-tuned at lr 0.001",
        {"model": "resnet10_w32", "weights": "{supervised_without_dataset_rn10w32}", "lr": 0.001},
    ),
    "sup-s100": Recipe(
        "`sup` fine-tuned for at least 100 steps (not 300)",
        {"weights": "{supervised_without_dataset}", "min_steps": 100},
    ),
}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _yaml(v: Any) -> str:
    if v is None:
        return "null"
    return f"[{','.join(str(x) for x in v)}]" if isinstance(v, (list, tuple)) else str(v)


# ---------------------------------------------------------------------------------------------- the data


@dataclass
class Dataset:
    name: str
    table: Path
    fold_col: str | None  # None: folds drawn by stratified group k-fold
    k: int = 5
    note: str = ""


def busbra_table(src: Path, out: Path) -> Dataset:
    """path,label,group,fold from bus_data.csv (Pathology, Case) and the authors' 5-fold-cv.csv (kFold)."""
    table = out / "busbra" / "table.csv"
    if not table.is_file():
        meta = pd.read_csv(src / "bus_data.csv")
        folds = pd.read_csv(src / "5-fold-cv.csv")[["ID", "kFold"]]
        df = meta.merge(folds, on="ID", how="left", validate="one_to_one")
        if df["kFold"].isna().any():
            raise SystemExit(f"{int(df['kFold'].isna().sum())} BUS-BRA images have no fold in 5-fold-cv.csv")
        rows = pd.DataFrame(
            {
                "path": [str((src / "Images" / f"{i}.png").resolve()) for i in df["ID"]],
                "label": df["Pathology"].astype(str),
                "group": "case" + df["Case"].astype(str),
                "fold": df["kFold"].astype(int),
            }
        )
        table.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(table, rows.to_csv(index=False))
    return Dataset("busbra", table, "fold", note="the authors' patient-wise folds (5-fold-cv.csv, kFold)")


NEW_SCANNER = "Toshiba Aplio 300"  # BUS-BRA's third scanner: 139 images of 72 patients, 49% malignant


def busbra_new_scanner_table(src: Path, out: Path) -> Dataset:
    """BUS-BRA's images from one scanner only (path,label,group): a small labelled set from a scanner that a
    backbone pretrained on the other BUS-BRA scanners never saw, as a clinic with its own machine would bring."""
    table = out / "busbra-toshiba" / "table.csv"
    if not table.is_file():
        meta = pd.read_csv(src / "bus_data.csv")
        df = meta[meta["Device"].str.startswith(NEW_SCANNER)]
        rows = pd.DataFrame(
            {
                "path": [str((src / "Images" / f"{i}.png").resolve()) for i in df["ID"]],
                "label": df["Pathology"].astype(str),
                "group": "case" + df["Case"].astype(str),
            }
        )
        table.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(table, rows.to_csv(index=False))
    return Dataset(
        "busbra-toshiba",
        table,
        None,
        note=f"BUS-BRA's {NEW_SCANNER} images only; stratified group 5-fold, seed 0",
    )


def fetal_table(src: Path, out: Path) -> Dataset:
    """path,label,group from the class folders; group = the patient number in the file name."""
    table = out / "fetal" / "table.csv"
    if not table.is_file():
        rows = []
        for f in sorted(src.glob("*/*.png")):
            m = re.match(r"(Patient\d+)_", f.name)
            if not m:
                raise SystemExit(f"no patient number in {f.name}")
            rows.append({"path": str(f.resolve()), "label": f.parent.name, "group": m.group(1)})
        table.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(table, pd.DataFrame(rows).to_csv(index=False))
    return Dataset(
        "fetal", table, None, note="stratified group 5-fold by patient, seed 0 (as `--folds 5` draws)"
    )


THREADS: int | None = (
    None  # --threads: torch CPU threads (not part of the config hash: same runs, other speed)
)


def base_config(ds: Dataset, out: Path, recipe: Recipe, n_boot: int) -> TrainConfig:
    """The config `sonokit train classify --data TABLE --folds K [--fold-col fold] --set ...` resolves to."""
    cls = get_task("classify")
    overrides = {
        "threads": THREADS,
        "data": str(ds.table),
        "out": str(out),
        "folds": ds.k,
        "fold_col": ds.fold_col,
        "n_boot": n_boot,
    }
    sets = dict(recipe.sets)
    if "weights" not in sets:
        overrides["pretrained"] = "none"  # the shipped backbone saw these very sets: never start from it here
    if sets.get("weights") in BACKBONES:
        backbone = pretrained_backbone(ds, sets["weights"])
        if not (backbone / "backbone.safetensors").is_file():
            raise SystemExit(f"{backbone}: no pretrained backbone; run benchmarks/bench_pretrain.py first")
        sets["weights"] = str(backbone)
    return resolve_config("classify", overrides=overrides, task_defaults=cls.defaults, sets=sets)


# recipe placeholders for a backbone that never saw the evaluated set -> its bench_pretrain.py run folder
BACKBONES = {
    "{pretrained_without_dataset}": "without-{name}",  # SimCLR on the other sets' images
    "{supervised_without_dataset}": "sup-without-{name}",  # supervised on the other sets' labels
    "{supervised_plus_sim}": "sup-without-{name}-plus-sim",  # ... and simulated fetal planes
    "{supervised_sim_only}": "sup-sim-fetal-only",  # simulated fetal planes alone
    "{supervised_without_dataset_rn10w32}": "sup-without-{name}-resnet10_w32",  # ... resnet10_w32
}


def pretrained_backbone(ds: Dataset, placeholder: str = "{pretrained_without_dataset}") -> Path:
    """The `sonokit pretrain` run that saw no image of `ds` (benchmarks/bench_pretrain.py)."""
    return ROOT / "bench_data" / "pretrain" / BACKBONES[placeholder].format(name=ds.name)


def index_and_folds(ds: Dataset) -> tuple[pd.DataFrame, list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """The index and folds exactly as the CNN runs see them (the floors use the same rows and folds)."""
    cfg = base_config(ds, Path("unused"), RECIPES["default"], 0)
    task = get_task("classify")(cfg)
    index = task.read_index()
    task.setup_classes(index)
    return index, list(task.classes or []), fold_indices(index, ds.k, cfg.seed, cfg.fold_col)


def command(ds: Dataset, recipe: Recipe, out: Path) -> str:
    fold = f" --fold-col {ds.fold_col}" if ds.fold_col else ""
    flags = f" {recipe.flags()}" if recipe.sets else ""
    for placeholder in BACKBONES:
        flags = flags.replace(
            f"--set weights={placeholder}", f"--weights {pretrained_backbone(ds, placeholder)}"
        )
    threads = f" --threads {THREADS}" if THREADS else ""
    init = "" if "weights" in recipe.sets else " --init none"
    return f"sonokit train classify --data {ds.table} --out {out} --folds {ds.k}{fold}{init}{flags}{threads}"


# ---------------------------------------------------------------------------------------------- floors


def pixels(index: pd.DataFrame, size: int) -> np.ndarray:
    """Letterboxed grey pixels in [0, 1], one row per image (through the preprocessed-frame cache)."""
    from sonokit.data import ImageDataset

    ds = ImageDataset(index[["path"]], None, size=size, channels=1)
    return np.stack([ds.load(i).reshape(-1) for i in range(len(ds))]).astype(np.float32) / 255.0


def floor_models(seed: int) -> dict[str, Any]:
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "majority class": lambda: DummyClassifier(strategy="prior"),
        "logistic regression": lambda: make_pipeline(
            StandardScaler(), LogisticRegression(C=0.01, max_iter=2000, class_weight="balanced")
        ),
        "random forest": lambda: RandomForestClassifier(
            n_estimators=300, class_weight="balanced", n_jobs=THREADS or 2, random_state=seed
        ),
    }


def run_floors(ds: Dataset, out: Path, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Out-of-fold probabilities of every floor on the same folds as the CNN runs (floors.json)."""
    index, classes, folds = index_and_folds(ds)
    y = index["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    results: dict[str, dict[str, Any]] = {}
    for size in (16, 32):
        start = time.perf_counter()
        x = pixels(index, size)
        load_s = time.perf_counter() - start
        for name, make in floor_models(seed).items():
            if name == "majority class" and size != 16:
                continue
            label = name if name == "majority class" else f"{name}, {size}x{size} px"
            probs = np.zeros((len(y), len(classes)))
            seconds = []
            for train_idx, test_idx in folds:
                start = time.perf_counter()
                model = make().fit(x[train_idx], y[train_idx])
                p = np.zeros((len(test_idx), len(classes)))
                p[:, model.classes_] = model.predict_proba(x[test_idx])
                probs[test_idx] = p
                seconds.append(time.perf_counter() - start + load_s / len(folds))
            results[label] = {"probs": probs.tolist(), "seconds": seconds}
            logging.getLogger("bench_real").warning("%s %s: done (%.1f s)", ds.name, label, sum(seconds))
    atomic_write_json(out / ds.name / "floors.json", {"classes": classes, "results": results})
    return results


# ---------------------------------------------------------------------------------------------- CNN runs


def run_cnn(ds: Dataset, out: Path, name: str, which: list[int] | None, n_boot: int) -> Path:
    """Train the recipe's folds `which` (all when None) into out/<dataset>/<recipe>/fold_<i>, as
    `sonokit train classify --folds K` does (sonokit.train.cv): same folds, same per-fold config, same engine.

    Finished folds are skipped, a killed fold resumes from its checkpoint; each fold's fit wall time goes to
    fold_<i>/bench_wall.json. Once every fold has run, metrics_cv.json is written as the CLI writes it."""
    from sonokit.train.cv import summarise

    recipe = RECIPES[name]
    root = out / ds.name / name
    cfg = base_config(ds, root, recipe, n_boot)
    saved = root / "config.yaml"
    if saved.is_file():
        from sonokit.core.config import load_run_config

        if load_run_config(root).hash() != cfg.hash():
            raise SystemExit(f"{root} was trained with another config; move it away to rerun recipe {name!r}")
    task = get_task("classify")(cfg)
    index = task.read_index()
    task.setup_classes(index)
    folds = fold_indices(index, cfg.folds, cfg.seed, cfg.fold_col)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, cfg.to_yaml())
    for i in which if which is not None else range(len(folds)):
        run_dir = root / f"fold_{i}"
        if _fold_done(run_dir):
            continue
        resume = (run_dir / "checkpoint_last.pt").is_file()
        fold_cfg = cfg.model_copy(
            update={"folds": 0, "fold_col": None, "out": str(run_dir), "resume": resume}
        )
        fold_task = get_task("classify")(fold_cfg)
        fold_task.classes = task.classes
        before = _wall(run_dir)
        start = time.perf_counter()
        fit(fold_task, fold_index(index, folds[i][1], cfg), run_dir)
        atomic_write_json(
            run_dir / "bench_wall.json",
            {
                "seconds": before + time.perf_counter() - start,
                "resumed": resume,
                "threads": torch.get_num_threads(),
            },
        )
        logging.getLogger("bench_real").warning("%s %s fold %d: done", ds.name, name, i)
    if all(_fold_done(root / f"fold_{i}") for i in range(len(folds))):
        per_fold = [
            json.loads((root / f"fold_{i}" / "metrics_test.json").read_text()) for i in range(len(folds))
        ]
        summary = {
            "folds": len(folds),
            "held_out": "test split of each fold (patients never shared between folds)",
            "fold_col": cfg.fold_col,
            "metrics": summarise(per_fold),
            "runs": [f"fold_{i}" for i in range(len(folds))],
        }
        atomic_write_json(root / "metrics_cv.json", summary)
    return root


def _fold_done(run_dir: Path) -> bool:
    return (run_dir / "model_card.json").is_file() and (run_dir / "metrics_test.json").is_file()


def _wall(run_dir: Path) -> float:
    path = run_dir / "bench_wall.json"
    return float(json.loads(path.read_text())["seconds"]) if path.is_file() else 0.0


def _cycle(loader: torch.utils.data.DataLoader):
    while True:
        yield from loader


def time_epoch(ds: Dataset, out: Path, names: list[str], batches: int) -> list[str]:
    """Seconds per full training epoch of each recipe, from `batches` timed batches after one warm-up batch."""
    from sonokit.core.distributed import DistInfo, pick_device
    from sonokit.core.loop import to_device
    from sonokit.train.engine import Trainer

    lines = [
        "| recipe | model | size | network s/batch | data s/batch | batches/epoch | s/epoch (est.) |",
        "|---|---|---|---|---|---|---|",
    ]
    index, _, folds = index_and_folds(ds)
    for name in names:
        cfg = base_config(ds, out / "timing" / name, RECIPES[name], 0)
        cfg = cfg.model_copy(update={"folds": 0, "fold_col": None, "limit_train_batches": batches + 1})
        task = get_task("classify")(cfg)
        task.setup_classes(index)
        trainer = Trainer(
            task, fold_index(index, folds[0][1], cfg), Path(cfg.out), DistInfo(device=pick_device("cpu"))
        )
        trainer._setup()
        it = _cycle(trainer.train_loader)
        trainer.net.train()
        seconds = []
        for step in range(batches + 1):
            batch = to_device(next(it), trainer.device, cfg.channels_last)
            start = time.perf_counter()
            out_ = task.forward(trainer.net, batch)
            loss = task.loss(out_, batch)
            trainer.optimizer.zero_grad()
            loss.backward()
            trainer.optimizer.step()
            if step:
                seconds.append(time.perf_counter() - start)
        # data loading apart, from a warm cache (as every epoch after the first reads it): one batch of
        # letterboxed, augmented images
        picks = list(range(min(cfg.batch_size, len(trainer.train_ds))))
        collate = task.collate or torch.utils.data.default_collate
        collate([trainer.train_ds[i] for i in picks])  # builds the cache entries
        start = time.perf_counter()
        collate([trainer.train_ds[i] for i in picks])
        data_s = time.perf_counter() - start
        net_s = float(np.median(seconds))
        per_batch = net_s + data_s
        n = len(trainer.train_loader)
        lines.append(
            f"| {name} | {cfg.model} | {cfg.size} | {net_s:.3f} | {data_s:.3f} | {n} | {per_batch * n:.0f} |"
        )
    return lines


# ---------------------------------------------------------------------------------------------- report


def _encode(labels: pd.Series, classes: list[str]) -> np.ndarray:
    return labels.astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)


def fold_metrics(y: np.ndarray, probs: np.ndarray, k: int) -> dict[str, float]:
    return {
        "accuracy": accuracy(y, probs.argmax(1)),
        "macro_f1": macro_f1(y, probs.argmax(1), k),
        "auroc": auroc_ovr(y, probs),
    }


@dataclass
class Result:
    """Out-of-fold probabilities of one method over the folds it has run."""

    method: str
    probs: np.ndarray  # (n, classes); rows of folds not run are NaN
    folds: list[int]
    seconds: list[float]
    epochs: list[int] = field(default_factory=list)
    command: str = ""


def load_floors(ds: Dataset, out: Path) -> list[Result]:
    path = out / ds.name / "floors.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    k = ds.k
    return [
        Result(name, np.asarray(r["probs"], dtype=float), list(range(k)), r["seconds"])
        for name, r in data["results"].items()
    ]


def load_cnn(ds: Dataset, out: Path, name: str, index: pd.DataFrame, classes: list[str]) -> Result | None:
    """Out-of-fold probabilities of a recipe from its folds' predictions_test.csv (finished folds only)."""
    root = out / ds.name / name
    probs = np.full((len(index), len(classes)), np.nan)
    row_of = {p: i for i, p in enumerate(index["path"].astype(str))}
    folds, seconds, epochs = [], [], []
    for i in range(ds.k):
        run = root / f"fold_{i}"
        if not _fold_done(run):
            continue
        preds = pd.read_csv(run / "predictions_test.csv", dtype={"frame": str}, keep_default_na=False)
        rows = preds["path"].astype(str).map(row_of).to_numpy()
        probs[rows] = preds[[f"p_{c}" for c in classes]].to_numpy(float)
        folds.append(i)
        seconds.append(_wall(run))
        card = json.loads((run / "model_card.json").read_text())
        epochs.append(int(card.get("training", {}).get("epochs_run", 0)))
    if not folds:
        return None
    return Result(name, probs, folds, seconds, epochs, command(ds, RECIPES[name], root))


def summary_row(
    res: Result, y: np.ndarray, groups: np.ndarray, folds, classes, n_boot: int
) -> dict[str, Any]:
    """Per-fold metrics, mean +- SD over folds, pooled out-of-fold metrics with a patient-bootstrap 95% CI."""
    per = [fold_metrics(y[folds[i][1]], res.probs[folds[i][1]], len(classes)) for i in res.folds]
    rows = np.concatenate([folds[i][1] for i in res.folds])
    pooled = classification_metrics(y[rows], res.probs[rows], classes, n_boot, 0, groups[rows])
    return {"per_fold": per, "pooled": pooled}


def paired_difference(
    a: np.ndarray, b: np.ndarray, y: np.ndarray, groups: np.ndarray, n_boot: int, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """Metric(a) - metric(b) on the same images, with a 95% CI from resampling patients (paired bootstrap)."""
    k = a.shape[1]
    codes, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(codes))]
    rng = np.random.default_rng(seed)
    point = {m: fold_metrics(y, a, k)[m] - fold_metrics(y, b, k)[m] for m in METRICS}
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        ma, mb = fold_metrics(y[idx], a[idx], k), fold_metrics(y[idx], b[idx], k)
        for m in METRICS:
            draws[m].append(ma[m] - mb[m])
    return {m: (point[m], *np.nanpercentile(draws[m], [2.5, 97.5])) for m in METRICS}


def _ms(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} +- {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def _ci(m: dict[str, Any], key: str) -> str:
    lo, hi = m.get(f"{key}_ci95") or (np.nan, np.nan)
    return f"{m[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def report(ds: Dataset, out: Path, recipes: list[str], n_boot: int) -> list[str]:
    index, classes, folds = index_and_folds(ds)
    y = _encode(index["label"], classes)
    groups = index["group"].astype(str).to_numpy()
    results = load_floors(ds, out)
    cnn = {name: load_cnn(ds, out, name, index, classes) for name in recipes}
    results += [r for r in cnn.values() if r is not None]
    n_pat = index["group"].nunique()
    counts = ", ".join(f"{c} {int((y == i).sum())}" for i, c in enumerate(classes))
    lines = [
        f"### {ds.name}: {len(index)} images, {n_pat} patients ({counts}); folds: {ds.note}",
        "",
        "| method | folds | accuracy | macro-F1 | AUROC | pooled accuracy [95% CI] | pooled macro-F1 [95% CI] "
        "| pooled AUROC [95% CI] | seconds/fold | epochs/fold |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {}
    for res in results:
        row = summary_row(res, y, groups, folds, classes, n_boot)
        rows[res.method] = row
        per = row["per_fold"]
        p = row["pooled"]
        ep = f"{np.mean(res.epochs):.1f}" if res.epochs else ""
        folds_txt = f"{len(res.folds)}/{ds.k}" + (
            "" if len(res.folds) == ds.k else f" ({','.join(map(str, res.folds))})"
        )
        lines.append(
            f"| {res.method} | {folds_txt} | {_ms([f['accuracy'] for f in per])} | {_ms([f['macro_f1'] for f in per])} | "
            f"{_ms([f['auroc'] for f in per])} | {_ci(p, 'accuracy')} | {_ci(p, 'macro_f1')} | {_ci(p, 'auroc')} | "
            f"{np.mean(res.seconds):.1f} | {ep} |"
        )
    lines += [
        "",
        "Folds: mean +- SD over held-out folds. Pooled: all out-of-fold predictions together; 95% CI from "
        f"{n_boot} bootstrap resamples of patients.",
        "",
        "Per held-out fold (fold i = the table's i-th fold):",
        "",
        "| method | accuracy per fold | macro-F1 per fold | AUROC per fold | seconds per fold | epochs per fold |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        per = rows[res.method]["per_fold"]

        def cell(key: str, per=per) -> str:
            return " / ".join(f"{f[key]:.3f}" for f in per)

        lines.append(
            f"| {res.method} | {cell('accuracy')} | {cell('macro_f1')} | {cell('auroc')} | "
            f"{' / '.join(f'{s:.0f}' for s in res.seconds)} | {' / '.join(map(str, res.epochs))} |"
        )
    base = cnn.get("default")
    others = [r for name, r in cnn.items() if name != "default" and r is not None]
    if base is not None and others:
        lines += [
            "",
            "Recipes vs the defaults on the folds both have run (paired: same images; 95% CI from "
            f"{n_boot} bootstrap resamples of patients):",
            "",
            "| recipe | what changes | folds | accuracy | Δ accuracy [95% CI] | macro-F1 | Δ macro-F1 [95% CI] "
            "| AUROC | Δ AUROC [95% CI] | seconds/fold | epochs/fold |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for res in others:
            common = [i for i in res.folds if i in base.folds]
            if not common:
                continue
            idx = np.concatenate([folds[i][1] for i in common])
            d = paired_difference(res.probs[idx], base.probs[idx], y[idx], groups[idx], n_boot)
            mine = fold_metrics(y[idx], res.probs[idx], len(classes))
            theirs = fold_metrics(y[idx], base.probs[idx], len(classes))
            cells = []
            for m in METRICS:
                pt, lo, hi = d[m]
                cells.append(f"{mine[m]:.3f} (default {theirs[m]:.3f}) | {pt:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            lines.append(
                f"| {res.method} | {RECIPES[res.method].what} | {','.join(map(str, common))} | "
                + " | ".join(cells)
                + f" | {np.mean(res.seconds):.0f} | {np.mean(res.epochs):.1f} |"
            )
    if ds.name == "busbra":
        lines += [
            "",
            "Issue #18 floors (BUS-BRA, 5-fold by patient, mean over folds): "
            + ", ".join(f"{m} >= {v}" for m, v in ISSUE_FLOORS.items()),
            "",
        ]
        lines += ["| method | " + " | ".join(ISSUE_FLOORS) + " | all met |", "|---|---|---|---|---|"]
        for res in results:
            if len(res.folds) != ds.k:
                continue
            per = rows[res.method]["per_fold"]
            means = {m: float(np.mean([f[m] for f in per])) for m in ISSUE_FLOORS}
            ok = [means[m] >= v for m, v in ISSUE_FLOORS.items()]
            lines.append(
                f"| {res.method} | "
                + " | ".join(
                    f"{means[m]:.3f} {'yes' if o else 'no'}" for m, o in zip(ISSUE_FLOORS, ok, strict=True)
                )
                + f" | {'yes' if all(ok) else 'no'} |"
            )
    commands = [r.command for r in results if r.command]
    if commands:
        lines += ["", "Commands (each CNN row):", "", "```"] + commands + ["```"]
    return lines


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shared", type=Path, default=SHARED, help="folder holding busbra/ and fetal_planes_subset/"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench_data" / "real")
    parser.add_argument("--dataset", default="busbra,fetal")
    parser.add_argument("--only", default="floors,cnn,report", help="any of floors, cnn, report")
    parser.add_argument(
        "--recipe", action="append", default=None, help=f"CNN recipe(s), default: default. {sorted(RECIPES)}"
    )
    parser.add_argument(
        "--run-folds", default=None, help="train only these folds now, e.g. 0,1 (a quick screen)"
    )
    parser.add_argument(
        "--report-recipes", default=None, help="recipes in the report (default: every one that has run)"
    )
    parser.add_argument(
        "--time-epoch", default=None, help="comma list of recipes: time one training epoch each, no runs"
    )
    parser.add_argument("--timing-batches", type=int, default=6)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for training (default: torch's choice); 1 is several times faster than 2 when "
        "another job holds a core",
    )
    parser.add_argument("--md", type=Path, default=None, help="also write the tables to this markdown file")
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("SONOKIT_CACHE", str(ROOT / "bench_data" / "cache"))

    makers = {
        "busbra": lambda: busbra_table(args.shared / "busbra", args.out),
        "fetal": lambda: fetal_table(args.shared / "fetal_planes_subset", args.out),
        "busbra-toshiba": lambda: busbra_new_scanner_table(args.shared / "busbra", args.out),
    }
    datasets = [makers[name]() for name in args.dataset.split(",")]
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; load average at start {os.getloadavg()[0]:.2f}",
        "",
    ]
    if args.time_epoch:
        for ds in datasets:
            lines += [f"### {ds.name}: one training epoch per recipe (fold 0)", ""]
            lines += time_epoch(ds, args.out, args.time_epoch.split(","), args.timing_batches) + [""]
        print("\n".join(lines))
        return
    only = set(args.only.split(","))
    recipes = args.recipe or ["default"]
    which = [int(i) for i in args.run_folds.split(",")] if args.run_folds else None
    for ds in datasets:
        if "floors" in only and not (args.out / ds.name / "floors.json").is_file():
            run_floors(ds, args.out)
        if "cnn" in only:
            for name in recipes:
                run_cnn(ds, args.out, name, which, args.n_boot)
    if "report" in only:
        for ds in datasets:
            shown = (
                args.report_recipes.split(",")
                if args.report_recipes
                else [n for n in RECIPES if (args.out / ds.name / n).is_dir()]
            )
            lines += report(ds, args.out, shown, args.n_boot) + [""]
        lines.append(f"load average at end {os.getloadavg()[0]:.2f}")
        text = "\n".join(lines)
        print(text)
        if args.md:
            atomic_write_text(args.md, text + "\n")


if __name__ == "__main__":
    main()
