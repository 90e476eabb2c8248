"""The two trainable parts of the aortic-valve system, as engine tasks.

`av-detect`: the valve box on a parasternal short-axis frame (sonokit.av.detector), with the paper's box-aware
augmentation (translation +-0.2, zoom 0.5-2, rotation +-10 degrees, gamma 0.5-1.2; each switchable in
`augment:`). Metrics: precision, recall, F1, mAP@0.5 and mean IoU at `options.score_threshold`.

`av-calcification`: calcified or not, from the crop around the valve box (ground-truth boxes here; the cascade
feeds detector boxes at inference) enlarged by `options.margin`, with class balancing by duplicating minority
training rows, rotation augmentation and the paper's optional "noise reduction" (subtract the crop minimum).

Both split the same index by patient in the same way (sonokit.av.data.split_av_index).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from sonokit.augment.config import AUGMENT_OPTIONS
from sonokit.av.boxes import box_iou, clip_boxes, detection_metrics, inverse_map
from sonokit.av.data import NO_LABEL, read_av_index, split_av_index
from sonokit.core.registry import register_task
from sonokit.data.frames import read_gray
from sonokit.errors import InputError
from sonokit.tasks.base import Task, TaskOptions, normalise_batch
from sonokit.tasks.classification import ClassificationOptions, ClassificationTask
from sonokit.utils import get_logger

log = get_logger(__name__)

#: the paper's detector augmentation ("all"); every other intensity/blur augmentation off
PAPER_AUGMENT: dict[str, Any] = {
    "rotation_deg": 10.0,
    "translate": 0.2,
    "zoom": [0.5, 2.0],
    "gamma": [0.5, 1.2],
    "brightness": 0.0,
    "contrast": 0.0,
    "blur_sigma": None,
    "blur_p": 0.0,
    "hflip": False,
}
#: the classifier's augmentation: rotation only
ROTATION_AUGMENT: dict[str, Any] = {
    **PAPER_AUGMENT,
    "rotation_deg": 15.0,
    "translate": 0.0,
    "zoom": None,
    "gamma": None,
}
VALVE, NO_VALVE = "valve", "none"
NO_VALVE_STATUS = "no valve found"


class _AVIndex:
    """Index reading and the patient split both av tasks share."""

    cfg: Any
    name: str

    def read_index(self) -> pd.DataFrame:
        if self.cfg.data is None:
            raise InputError("no dataset given: pass --data DIR (boxes.csv [+ labels.csv])")
        return read_av_index(self.cfg.data)

    def split_index(self, df: pd.DataFrame) -> pd.DataFrame:
        df = self.given_splits(df)
        if df.empty:
            raise InputError("the dataset index has no rows", self.cfg.data)
        fractions = (
            1.0 - self.cfg.val_fraction - self.cfg.test_fraction,
            self.cfg.val_fraction,
            self.cfg.test_fraction,
        )
        return split_av_index(df, fractions, self.cfg.seed)


def _check_gray(cfg: Any, name: str) -> None:
    if cfg.channels != 1:
        raise InputError(f"{name} works on grayscale frames: channels must be 1 (got {cfg.channels})")


def predict_rows(files: Sequence[Path]) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """Rows for new still images, decoding each once so an unreadable file is reported up front."""
    rows, errors = [], []
    for f in files:
        try:
            read_gray(f)
            rows.append({"path": str(f)})
        except InputError as err:
            errors.append((f, str(err)))
    return pd.DataFrame(rows, columns=["path"]), errors


# ---------------------------------------------------------------------------------------------- detector


class DetectOptions(TaskOptions):
    score_threshold: float = Field(0.3, gt=0.0, lt=1.0, description="a detection counts from this score on")
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0, description="IoU for a true positive (mAP@0.5)")
    max_detections: int = Field(
        5, ge=1, description="peaks kept per frame (for mAP; the cascade uses the best)"
    )
    nms_iou: float = Field(0.5, gt=0.0, le=1.0)
    head_width: int = Field(64, ge=8)
    giou_weight: float = Field(1.0, ge=0.0)
    l1_weight: float = Field(1.0, ge=0.0)
    montage: int = Field(12, ge=0, description="test frames drawn with their boxes into plots/")


@register_task
class AVDetectTask(_AVIndex, Task):
    name = "av-detect"
    kind = "detection"
    monitor = ("map50", "max")
    headline = ("map50", "f1", "recall", "mean_iou")
    Options = DetectOptions
    opts: DetectOptions
    allow_hflip = False
    augment_options = (
        AUGMENT_OPTIONS  # boxes move with the pixels (torchvision v2); hflip refused (allow_hflip)
    )
    intended_use = (
        "Research: locate the aortic valve in a parasternal short-axis ultrasound frame (one box, or none), "
        "as the first stage of the calcification cascade. Not validated for any clinical purpose."
    )
    defaults = {
        "model": "tinycnn",
        "size": 128,
        "epochs": 30,
        "batch_size": 16,
        "lr": 0.003,
        "patience": 0,
        "n_boot": 500,
        "augment": dict(PAPER_AUGMENT),
        "options": {"score_threshold": 0.3, "iou_threshold": 0.5, "max_detections": 5, "head_width": 64},
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        _check_gray(cfg, self.name)
        self.classes = [VALVE]

    def prepare_index(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        return self.split_index(self.read_index() if df is None else df)

    def build_dataset(self, df: pd.DataFrame, train: bool):
        from sonokit.av.datasets import DetectionDataset

        augment = self.train_augment() if train else None
        return DetectionDataset(df, self.cfg.size, augment, seed=self.cfg.seed)

    def describe_data(self, index: pd.DataFrame, items: dict[str, pd.DataFrame]) -> dict[str, Any]:
        info = super().describe_data(index, items)
        info["frames_without_valve"] = {s: int((df["n_boxes"] == 0).sum()) for s, df in items.items()}
        info["augment"] = self.cfg.augment.given()
        return info

    # ------------------------------------------------------------------ model and step

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        from sonokit.av.detector import AVDetector
        from sonokit.models.registry import refuse_download

        refuse_download(self.cfg.pretrained, "the valve detector")
        return AVDetector(
            self.cfg.model,
            self.cfg.channels,
            self.cfg.size,
            self.opts.head_width,
            weights=self.cfg.weights if load_init_weights else None,
        )

    def _stride(self, out: torch.Tensor) -> tuple[float, float]:
        return self.cfg.size / out.shape[2], self.cfg.size / out.shape[3]

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        mean, std = self.cfg.channel_stats()
        return model(normalise_batch(batch["x"], mean, std))

    def loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        from sonokit.av.detector import detection_loss

        return detection_loss(
            outputs,
            batch["boxes"],
            batch["box_valid"],
            self._stride(outputs),
            self.opts.giou_weight,
            self.opts.l1_weight,
        )

    def collect(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        from sonokit.av.detector import decode

        boxes, scores = decode(outputs, self._stride(outputs), self.opts.max_detections, self.opts.nms_iou)
        return {
            "index": batch["index"].detach().cpu().numpy(),
            "boxes": boxes.cpu().numpy().astype(np.float64),
            "scores": scores.cpu().numpy().astype(np.float64),
            "geo": batch["geo"].detach().cpu().numpy(),
            "hw": batch["hw"].detach().cpu().numpy(),
        }

    # ------------------------------------------------------------------ predictions and metrics

    def predictions(self, collected: dict[str, np.ndarray], items: pd.DataFrame) -> pd.DataFrame:
        """One row per frame: the best box in original pixels, its score, the truth and their IoU."""
        rows = items.iloc[collected["index"]].reset_index(drop=True)
        labelled = "boxes" in rows.columns
        thr = self.opts.score_threshold
        records = []
        for i in range(len(rows)):
            keep = collected["scores"][i] >= 0
            scores = collected["scores"][i][keep]
            boxes = inverse_map(collected["boxes"][i][keep], collected["geo"][i])
            boxes = clip_boxes(boxes, *collected["hw"][i])
            rec: dict[str, Any] = {"path": str(rows.at[i, "path"])}
            if "frame" in rows.columns:
                rec["frame"] = rows.at[i, "frame"]
            top = boxes[0] if len(boxes) else np.full(4, np.nan)
            found = bool(len(scores) and scores[0] >= thr)
            rec.update(
                status="ok" if found else NO_VALVE_STATUS,
                score=float(scores[0]) if len(scores) else 0.0,
                x1=top[0],
                y1=top[1],
                x2=top[2],
                y2=top[3],
            )
            gts = rows.at[i, "boxes"] if labelled else None
            if gts is not None:
                rec["y_true"] = VALVE if len(gts) else NO_VALVE
                g = gts[0] if len(gts) else np.full(4, np.nan)
                rec.update(gt_x1=g[0], gt_y1=g[1], gt_x2=g[2], gt_y2=g[3])
                rec["iou"] = float(box_iou(top[None], gts).max()) if found and len(gts) else 0.0
            else:
                rec["y_true"] = ""
            rec["y_pred"] = VALVE if found else NO_VALVE
            rec["_dets"] = (boxes, scores)
            rec["_gts"] = gts if gts is not None else np.zeros((0, 4))
            rec["_group"] = str(rows.at[i, "group"]) if "group" in rows.columns else rec["path"]
            records.append(rec)
        return pd.DataFrame(records)

    def _metrics_from(self, preds: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        labelled = preds[preds["y_true"] != ""]
        groups = labelled["_group"].to_numpy() if self.cfg.bootstrap_by_group and n_boot else None
        return detection_metrics(
            list(labelled["_dets"]),
            list(labelled["_gts"]),
            score_threshold=self.opts.score_threshold,
            iou_threshold=self.opts.iou_threshold,
            n_boot=n_boot,
            seed=seed,
            groups=groups,
        )

    def score(self, collected: dict[str, np.ndarray], items: pd.DataFrame, metric: str) -> float:
        names = ("map50", "f1", "precision", "recall", "mean_iou")
        if metric not in names:
            raise InputError(
                f"unknown monitor metric {metric!r} for {self.name}; choose from {', '.join(names)}"
            )
        value = self._metrics_from(self.predictions(collected, items), 0, 0)[metric]
        return float("nan") if value is None else float(value)

    def metrics(self, preds: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        return self._metrics_from(preds, n_boot, seed)

    def after_evaluate(self, model, dataset, items, preds, plot_dir, split) -> list[Path]:
        if split != "test" or self.opts.montage <= 0 or len(items) == 0:
            return []
        from sonokit.av.plots import detection_montage

        return [
            detection_montage(preds, plot_dir / f"detections_{split}.png", self.opts.montage, self.cfg.seed)
        ]

    # ------------------------------------------------------------------ card and prediction

    def input_spec(self) -> dict[str, Any]:
        spec = super().input_spec()
        spec.update(
            resize="letterbox (aspect kept, zero padding); boxes mapped back to original pixels",
            color="gray (BT.601 luminance)",
            score_threshold=self.opts.score_threshold,
        )
        return spec

    def predict_items(self, files: Sequence[Path]) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
        return predict_rows(files)


# ---------------------------------------------------------------------------------------------- classifier


class CalcificationOptions(ClassificationOptions):
    margin: float = Field(
        0.1, ge=0.0, le=1.0, description="box enlarged by this fraction of its size per side"
    )
    noise_reduction: bool = Field(
        False, description="subtract the crop's minimum grey level (the paper's option)"
    )
    duplicate_minority: bool = Field(
        True, description="class balancing by duplicating minority training rows"
    )
    box_jitter: float = Field(
        0.1, ge=0.0, le=0.5, description="training: move each box side by up to this fraction of the box size"
    )
    positive: str = Field("1", description="the calcified class label")


@register_task
class AVCalcificationTask(_AVIndex, ClassificationTask):
    name = "av-calcification"
    headline = ("accuracy", "macro_f1", "auroc", "f1", "recall")
    Options = CalcificationOptions
    opts: CalcificationOptions
    allow_hflip = False
    intended_use = (
        "Research: calcified or not from a crop around the aortic valve of a parasternal short-axis frame "
        "(second stage of the cascade after av-detect). Not validated for any clinical purpose."
    )
    defaults = {
        "model": "tinycnn",
        "head": "avg",
        "size": 64,
        "epochs": 20,
        "batch_size": 32,
        "lr": 0.002,
        "balance": "none",
        "patience": 0,
        "n_boot": 500,
        "augment": dict(ROTATION_AUGMENT),
        "options": {
            "margin": 0.1,
            "noise_reduction": False,
            "duplicate_minority": True,
            "box_jitter": 0.1,
            "positive": "1",
        },
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        _check_gray(cfg, self.name)

    def prepare_index(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        df = self.split_index(self.read_index() if df is None else df)
        usable = (df["label"] != NO_LABEL) & (df["n_boxes"] > 0)
        if not usable.any():
            raise InputError(
                "no frame has both a calcification label (labels.csv) and a valve box", self.cfg.data
            )
        if (~usable).any():
            log.info(
                "%d frame(s) without a label or a valve box left out of %s", int((~usable).sum()), self.name
            )
        df = df[usable].reset_index(drop=True)
        self.setup_classes(df)
        if self.opts.positive not in (self.classes or []):
            raise InputError(f"options.positive {self.opts.positive!r} is not a class ({self.classes})")
        return df

    def expand(self, df: pd.DataFrame) -> pd.DataFrame:
        """Frames -> crop rows (first box of each frame); the training split duplicated to balance classes."""
        from sonokit.data import oversample_minority

        df = df.reset_index(drop=True)
        if "boxes" in df.columns:
            first = (
                np.stack([b[0] if len(b) else np.full(4, np.nan) for b in df["boxes"]])
                if len(df)
                else np.zeros((0, 4))
            )
            df = df.assign(x1=first[:, 0], y1=first[:, 1], x2=first[:, 2], y2=first[:, 3])
        is_train = "split" in df.columns and len(df) and (df["split"] == "train").all()
        if is_train and self.opts.duplicate_minority:
            before = len(df)
            df = oversample_minority(df, seed=self.cfg.seed)
            log.info("class balancing by duplication: %d -> %d training crops", before, len(df))
        return df

    def build_dataset(self, df: pd.DataFrame, train: bool):
        from sonokit.av.datasets import CropDataset, CropItemDataset

        o = self.opts
        base = CropDataset(df, self.classes, self.cfg.size, o.margin, o.noise_reduction, o.box_jitter)
        augment = self.train_augment() if train else None
        return CropItemDataset(base, augment, self.cfg.seed, jitter=train and o.box_jitter > 0)

    def check_items(self, items: pd.DataFrame) -> None:
        from sonokit.tasks.base import verify_images

        verify_images(items["path"].astype(str).unique())

    def metrics(self, preds: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        """The classification bundle plus the calcified class's F1, precision, recall and specificity."""
        from sonokit.av.metrics import binary_metrics

        out = super().metrics(preds, n_boot, seed)
        labelled = preds[preds["y_true"] != ""]
        pos = f"p_{self.opts.positive}"
        groups = labelled["_group"].to_numpy() if self.cfg.bootstrap_by_group else None
        binary = binary_metrics(
            labelled["y_true"] == self.opts.positive,
            labelled["y_pred"] == self.opts.positive,
            labelled[pos].to_numpy(float),
            groups,
            n_boot,
            seed,
        )
        for key in ("f1", "precision", "recall", "specificity"):
            out[key], out[f"{key}_ci95"] = binary[key], binary[f"{key}_ci95"]
        out["positive_class"] = self.opts.positive
        return out

    def input_spec(self) -> dict[str, Any]:
        spec = super().input_spec()
        spec.update(
            crop={"margin": self.opts.margin, "noise_reduction": self.opts.noise_reduction},
            resize="crop, then letterbox (aspect kept, zero padding)",
        )
        return spec

    def export_recipe(self) -> dict[str, Any]:
        from sonokit.tasks.recipe import sonokit_only_recipe

        return sonokit_only_recipe(
            self,
            "the valve crop (box from av-detect, margin, optional noise reduction) is sonokit's av cascade",
            crop="sonokit only",
        )

    def predict_items(self, files: Sequence[Path]) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
        """New files are taken as crops already (whole image); use `sonokit av predict` for full frames."""
        return predict_rows(files)
