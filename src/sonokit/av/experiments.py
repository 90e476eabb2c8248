"""`sonokit av experiments`: the shape of the paper's tables, on whatever data is given, sized for a CPU.

Table 1 (detector): one av-detect run per augmentation set (none, each augmentation alone, all, translation +
rotation), test-split precision, recall, F1, mAP@0.5 and mean IoU with 95% CIs.
Table 2 (classifier): one av-calcification run per backbone x pooling, test-split F1 etc. on ground-truth crops
and through the cascade (boxes from the detector trained with all augmentations), plus the heuristic rows
(thresholds 190/200/210/220, any white pixel and a minimum pixel count) on the same crops.
Every run is an ordinary run folder under OUT/runs/ (a finished one is reused, so an interrupted experiment
resumes where it stopped); tables go to OUT/*.csv and OUT/*.md, the settings to OUT/experiments.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sonokit.av.tables import CALCIFICATION_COLUMNS, write_table
from sonokit.errors import InputError
from sonokit.utils import atomic_write_json, atomic_write_text, get_logger

log = get_logger(__name__)

_OFF = {"rotation_deg": 0.0, "translate": 0.0, "zoom": None, "gamma": None}
_PAPER = {"rotation_deg": 10.0, "translate": 0.2, "zoom": [0.5, 2.0], "gamma": [0.5, 1.2]}
#: the detector's augmentation sets, as in the paper's ablation
AUGMENT_SETS: dict[str, dict[str, Any]] = {
    "none": dict(_OFF),
    "translation": {**_OFF, "translate": _PAPER["translate"]},
    "zoom": {**_OFF, "zoom": _PAPER["zoom"]},
    "rotation": {**_OFF, "rotation_deg": _PAPER["rotation_deg"]},
    "gamma": {**_OFF, "gamma": _PAPER["gamma"]},
    "all": dict(_PAPER),
    "translation+rotation": {
        **_OFF,
        "translate": _PAPER["translate"],
        "rotation_deg": _PAPER["rotation_deg"],
    },
}
DETECTOR_FOR_CASCADE = "all"
DET_COLUMNS = ["augmentation", "precision", "recall", "f1", "map50", "mean_iou", "n", "seconds"]
CLS_COLUMNS = [CALCIFICATION_COLUMNS[0], "backbone", "pooling", *CALCIFICATION_COLUMNS[1:], "seconds"]
CI = ["precision", "recall", "f1", "map50", "mean_iou", "specificity"]


@dataclass
class ExperimentPlan:
    """What to train; `quick()` is the tiny version the tests run."""

    augment_sets: list[str] = field(default_factory=lambda: list(AUGMENT_SETS))
    backbones: list[str] = field(default_factory=lambda: ["tinycnn", "mobilenetv3_small"])
    poolings: list[str] = field(default_factory=lambda: ["avg", "max", "none"])
    det_epochs: int = 25
    cls_epochs: int = 15
    det_size: int = 128
    cls_size: int = 64
    seed: int = 0
    n_boot: int = 500
    thresholds: list[int] = field(default_factory=lambda: [190, 200, 210, 220])
    min_pixels: list[int] = field(default_factory=lambda: [1, 5])
    device: str = "auto"
    limit_train_batches: int | None = None

    @classmethod
    def quick(cls, **kw: Any) -> ExperimentPlan:
        base = {
            "augment_sets": ["none", "all"],
            "backbones": ["tinycnn"],
            "poolings": ["avg"],
            "det_epochs": 1,
            "cls_epochs": 1,
            "det_size": 64,
            "cls_size": 32,
            "n_boot": 20,
            "limit_train_batches": 2,
        }
        return cls(**{**base, **kw})

    def check(self) -> None:
        unknown = sorted(set(self.augment_sets) - set(AUGMENT_SETS))
        if unknown:
            raise InputError(f"unknown augmentation set(s) {unknown}; choose from {', '.join(AUGMENT_SETS)}")
        bad = sorted(set(self.poolings) - {"avg", "max", "none"})
        if bad:
            raise InputError(f"unknown pooling(s) {bad}; choose from avg, max, none")
        from sonokit.models.registry import get_entry

        for name in self.backbones:
            get_entry(name, "image")  # ModelError with a suggestion for a typo, before anything trains


def _train(task: str, data: Path, run_dir: Path, overrides: dict[str, Any]) -> tuple[Path, float]:
    """Train one run (or reuse a finished one in run_dir); returns (run_dir, seconds spent)."""
    from sonokit.core.config import resolve_config
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    if (run_dir / "model_card.json").is_file() and (run_dir / "metrics_test.json").is_file():
        log.info("reusing finished run %s", run_dir)
        return run_dir, 0.0
    values = {"data": str(data), "out": str(run_dir), **overrides}
    resume = (run_dir / "checkpoint_last.pt").is_file()
    cfg = resolve_config(task, overrides={**values, "resume": resume}, task_defaults=get_task(task).defaults)
    start = time.perf_counter()
    train(cfg)
    return run_dir, time.perf_counter() - start


def _test_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics_test.json").read_text(encoding="utf-8"))


def run_experiments(data: str | Path, out: str | Path, plan: ExperimentPlan | None = None) -> dict[str, Path]:
    """Train every run of the plan, evaluate, and write the detector and classifier tables."""
    from sonokit.av.cascade import evaluate_cascade

    plan = plan or ExperimentPlan()
    plan.check()
    data, out = Path(data).resolve(), Path(out)
    if not data.exists():
        raise InputError("no such file or folder", data)
    runs = out / "runs"
    common = {
        "seed": plan.seed,
        "n_boot": plan.n_boot,
        "device": plan.device,
        "limit_train_batches": plan.limit_train_batches,
    }
    written: dict[str, Path] = {}

    det_rows, det_runs = [], {}
    for name in plan.augment_sets:
        augment = {**AUGMENT_SETS[name], "brightness": 0.0, "contrast": 0.0, "blur_p": 0.0, "hflip": False}
        run_dir, secs = _train(
            "av-detect",
            data,
            runs / f"detect-{name.replace('+', '-')}",
            {**common, "epochs": plan.det_epochs, "size": plan.det_size, "augment": augment},
        )
        det_runs[name] = run_dir
        det_rows.append({"augmentation": name, **_test_metrics(run_dir), "seconds": round(secs, 1)})
    det_df = pd.DataFrame(det_rows)
    det_df = det_df[
        [c for c in DET_COLUMNS if c in det_df.columns] + [c for c in det_df.columns if c not in DET_COLUMNS]
    ]
    written["detector_csv"], written["detector_md"] = write_table(
        det_df, out / "detector.csv", DET_COLUMNS, CI, title="Aortic-valve detection (test split)"
    )
    cascade_det = det_runs.get(DETECTOR_FOR_CASCADE) or det_runs[plan.augment_sets[-1]]

    cls_rows: list[dict[str, Any]] = []
    heuristic: pd.DataFrame | None = None
    for backbone in plan.backbones:
        for pooling in plan.poolings:
            run_dir, secs = _train(
                "av-calcification",
                data,
                runs / f"cls-{backbone}-{pooling}",
                {
                    **common,
                    "epochs": plan.cls_epochs,
                    "size": plan.cls_size,
                    "model": backbone,
                    "head": pooling,
                },
            )
            summary = evaluate_cascade(
                cascade_det,
                run_dir,
                data,
                "test",
                out_dir=run_dir / "cascade",
                thresholds=plan.thresholds,
                min_pixels=plan.min_pixels,
                n_boot=plan.n_boot,
                device=plan.device,
            )
            table = summary.pop("table")
            for boxes, key in (("ground truth", "classifier_on_true_boxes"), ("detector", "cascade")):
                cls_rows.append(
                    {
                        **summary[key],
                        "method": "CNN",
                        "backbone": backbone,
                        "pooling": pooling,
                        "boxes": boxes,
                        "seconds": round(secs, 1),
                    }
                )
            if heuristic is None:  # the same crops for every classifier row: add them once
                heuristic = table[table["method"] == "heuristic"]
    cls_df = pd.concat(
        [pd.DataFrame(cls_rows), heuristic if heuristic is not None else pd.DataFrame()], ignore_index=True
    )
    cls_df = cls_df[
        [c for c in CLS_COLUMNS if c in cls_df.columns] + [c for c in cls_df.columns if c not in CLS_COLUMNS]
    ]
    written["classifier_csv"], written["classifier_md"] = write_table(
        cls_df,
        out / "classifier.csv",
        CLS_COLUMNS,
        CI,
        title=f"Calcification (test split; cascade boxes from the '{DETECTOR_FOR_CASCADE}' detector)",
    )
    settings = {
        "data": str(data),
        "plan": asdict(plan),
        "augment_sets": {k: AUGMENT_SETS[k] for k in plan.augment_sets},
        "cascade_detector": str(cascade_det),
    }
    written["settings"] = atomic_write_json(out / "experiments.json", settings)
    md = [
        written["detector_md"].read_text(encoding="utf-8"),
        written["classifier_md"].read_text(encoding="utf-8"),
    ]
    written["tables_md"] = atomic_write_text(out / "tables.md", "\n".join(md))
    return written


def parse_list(values: Sequence[str] | None) -> list[str] | None:
    """Options given as repeated flags or comma lists: ["a,b", "c"] -> ["a", "b", "c"]."""
    if not values:
        return None
    return [v.strip() for item in values for v in str(item).split(",") if v.strip()]
