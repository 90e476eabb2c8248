"""The `quality` task: a 4-class corruption classifier (original / scale-up / blur / noise) with a severity head.

Trained on corruptions generated from clean images (`--data` an HC18 folder, a table or a folder of images), as
the study did: each clean image appears once as itself and `copies` times per corruption, with intensities drawn
from the thresholds where a plane classifier started to fail up to saturation (`options.ranges`).
The network outputs K + 1 values: K class logits and one severity logit whose sigmoid estimates the SSIM to
the clean image; the loss is cross-entropy + `ssim_weight` x MSE(sigmoid, SSIM).
Evaluation adds accuracy per corruption and per intensity bin (the study's accuracy-by-distortion plot), the
severity error, and the gate's binary accuracy (original vs any corruption).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator
from torch import nn

from sonokit.core.registry import register_task
from sonokit.data.frames import read_gray
from sonokit.errors import InputError
from sonokit.evaluate.metrics import accuracy, classification_metrics, macro_f1, regression_metrics
from sonokit.quality.dataset import (
    CLASS_CORRUPTION,
    DEFAULT_RANGES,
    MIN_SIDE,
    QUALITY_CLASSES,
    CorruptionDataset,
    input_channels,
    model_input,
    plan_corruptions,
    read_clean_images,
)
from sonokit.tasks.base import Task, TaskOptions, normalise_batch
from sonokit.utils import get_logger

log = get_logger(__name__)

_SPLIT_SALT = {"train": 1, "val": 2, "test": 3, "": 4}


class QualityOptions(TaskOptions):
    ranges: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(DEFAULT_RANGES))
    copies: int = Field(1, ge=1, description="corrupted copies per clean image and corruption")
    highpass: bool = Field(True, description="add the native-resolution high-pass energy channel")
    ssim_weight: float = Field(1.0, ge=0.0, description="lambda of the SSIM regression loss")
    intensity_bins: int = Field(
        4, ge=1, description="bins per corruption range in the accuracy-by-distortion table"
    )
    gradcam_per_class: int = Field(1, ge=0, description="Grad-CAM overlays per true class of the test split")

    @field_validator("ranges")
    @classmethod
    def _known(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        unknown = set(v) - set(CLASS_CORRUPTION)
        if unknown:
            raise ValueError(f"unknown classes {sorted(unknown)}; ranges are for {list(CLASS_CORRUPTION)}")
        for name, (lo, hi) in v.items():
            if not 0 < lo <= hi:
                raise ValueError(f"range of {name} must satisfy 0 < low <= high, got ({lo}, {hi})")
        return {**DEFAULT_RANGES, **v}


@register_task
class QualityTask(Task):
    name = "quality"
    kind = "classification"
    monitor = ("accuracy", "max")
    headline = ("accuracy", "macro_f1", "auroc", "gate_accuracy", "ssim_mae")
    Options = QualityOptions
    opts: QualityOptions
    # a mirror keeps the corruption class and the SSIM (both measured on the unaugmented image); any other
    # geometry or grey-level change would alter the corruption it must recognise. Mirrored by default, as ever.
    augment_options = frozenset({"enabled", "hflip"})
    augment_defaults = {"hflip": True}
    augment_note = "its targets (corruption class, SSIM) stay true only under a mirror"
    intended_use = (
        "Research: flag ultrasound images that look zoomed (scale-up), median-blurred or noisy, estimate their "
        "SSIM to a clean version, and gate a dataset before training. Trained on synthetic corruptions of clean "
        "images; real acquisition faults may look different. Not for clinical use."
    )
    defaults = {
        "model": "tinycnn",
        "size": 128,
        "channels": 2,
        "mean": [0.19, 0.26],
        "std": [0.17, 0.27],
        "epochs": 12,
        "batch_size": 32,
        "lr": 0.002,
        "patience": 0,
        "n_boot": 200,
        "options": {
            "ranges": {k: list(v) for k, v in DEFAULT_RANGES.items()},
            "copies": 1,
            "highpass": True,
            "ssim_weight": 1.0,
            "intensity_bins": 4,
            "gradcam_per_class": 1,
        },
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.classes = list(QUALITY_CLASSES)
        if cfg.channels != input_channels(self.opts.highpass):
            raise InputError(
                f"the quality task needs channels: {input_channels(self.opts.highpass)} with "
                f"options.highpass={self.opts.highpass} (got channels: {cfg.channels})"
            )

    # ------------------------------------------------------------------ data

    def read_index(self) -> pd.DataFrame:
        if self.cfg.data is None:
            raise InputError("no dataset given: pass --data PATH (a folder or table of clean images)")
        return read_clean_images(self.cfg.data)

    def setup_classes(self, df: pd.DataFrame) -> None:
        self.classes = list(QUALITY_CLASSES)

    def expand(self, df: pd.DataFrame) -> pd.DataFrame:
        """Clean rows of one split -> planned items (original + corrupted copies), seeded by run seed and split."""
        split = str(df["split"].iloc[0]) if "split" in df.columns and len(df) else ""
        seed = int(
            np.random.SeedSequence([abs(self.cfg.seed), _SPLIT_SALT.get(split, 5)]).generate_state(1)[0]
        )
        return plan_corruptions(df, self.opts.ranges, self.opts.copies, seed)

    def build_dataset(self, df: pd.DataFrame, train: bool) -> CorruptionDataset:
        if train:
            aug = self.augment_config()
            flip = aug.enabled and aug.hflip
        else:
            flip = False
        return CorruptionDataset(df, self.cfg.size, self.opts.highpass, flip=flip, seed=self.cfg.seed)

    def _targets(self, df: pd.DataFrame) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return df["label"].map(lookup).to_numpy(dtype=np.int64)

    def sample_weights(self, df: pd.DataFrame) -> np.ndarray:
        counts = np.bincount(self._targets(df), minlength=len(self.classes)).astype(float)
        return 1.0 / counts[self._targets(df)]

    def describe_data(self, index: pd.DataFrame, items: dict[str, pd.DataFrame]) -> dict[str, Any]:
        info = super().describe_data(index, items)
        info["clean_images"] = {s: int((df["label"] == "original").sum()) for s, df in items.items()}
        info["ranges"] = {k: list(v) for k, v in self.opts.ranges.items()}
        info["copies"] = self.opts.copies
        return info

    # ------------------------------------------------------------------ model and step

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        from sonokit.models import create

        return create(
            self.cfg.model,
            num_classes=len(self.classes) + 1,
            in_chans=self.cfg.channels,
            head=self.cfg.head,
            pretrained=self.cfg.pretrained if load_init_weights else None,
            weights=self.cfg.weights if load_init_weights else None,
            dropout=self.cfg.dropout,
            img_size=self.cfg.size,
        )

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        mean, std = self.cfg.channel_stats()
        return model(normalise_batch(batch["x"], mean, std))

    def loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        k = len(self.classes)
        outputs = outputs.float()
        ce = nn.functional.cross_entropy(
            outputs[:, :k], batch["y"].long(), label_smoothing=self.cfg.label_smoothing
        )
        mse = nn.functional.mse_loss(torch.sigmoid(outputs[:, k]), batch["ssim"].float())
        return ce + self.opts.ssim_weight * mse

    def collect(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        k = len(self.classes)
        out = outputs.detach().float()
        return {
            "index": batch["index"].detach().cpu().numpy(),
            "probs": torch.softmax(out[:, :k], dim=1).cpu().numpy(),
            "ssim_pred": torch.sigmoid(out[:, k]).cpu().numpy(),
            "y": batch["y"].detach().cpu().numpy(),
            "ssim": batch["ssim"].detach().cpu().numpy(),
        }

    # ------------------------------------------------------------------ images in memory (gate, sweep)

    def array_input(self, image: np.ndarray) -> np.ndarray:
        """The model's float input (C, S, S) for one uint8 image, exactly as in training."""
        return model_input(image, self.cfg.size, self.opts.highpass)

    def array_batch(self, images: Sequence[np.ndarray]) -> dict[str, Any]:
        """Unlabelled uint8 images at native resolution as the model's batch (`array_input` each)."""
        n = len(images)
        return {
            "x": torch.from_numpy(np.stack([self.array_input(im) for im in images])),
            "y": torch.full((n,), -1, dtype=torch.long),
            "ssim": torch.full((n,), -1.0),
            "index": torch.arange(n),
        }

    # ------------------------------------------------------------------ predictions and metrics

    def prob_columns(self) -> list[str]:
        return [f"p_{c}" for c in self.classes]

    def predictions(self, collected: dict[str, np.ndarray], items: pd.DataFrame) -> pd.DataFrame:
        rows = items.iloc[collected["index"]].reset_index(drop=True)
        classes = np.asarray(self.classes, dtype=object)
        y, probs = collected["y"], collected["probs"]
        out = pd.DataFrame(
            {
                "path": rows["path"].astype(str).to_numpy(),
                "y_true": np.where(y >= 0, classes[np.clip(y, 0, None)], ""),
                "y_pred": classes[probs.argmax(axis=1)],
            }
        )
        for j, col in enumerate(self.prob_columns()):
            out[col] = probs[:, j]
        out["ssim_true"] = np.where(collected["ssim"] >= 0, collected["ssim"], np.nan)
        out["ssim_pred"] = collected["ssim_pred"]
        out["intensity"] = rows["intensity"].to_numpy(float) if "intensity" in rows.columns else np.nan
        out["_group"] = rows["group"].astype(str).to_numpy() if "group" in rows.columns else out["path"]
        return out

    def score(self, collected: dict[str, np.ndarray], items: pd.DataFrame, metric: str) -> float:
        y, probs = collected["y"], collected["probs"]
        fns = {
            "accuracy": lambda: accuracy(y, probs.argmax(axis=1)),
            "macro_f1": lambda: macro_f1(y, probs.argmax(axis=1), len(self.classes)),
            "ssim_mae": lambda: float(np.mean(np.abs(collected["ssim_pred"] - collected["ssim"]))),
            "gate_accuracy": lambda: float(np.mean((probs[:, 0] < 0.5) == (y != 0))),
        }
        if metric not in fns:
            raise InputError(
                f"unknown monitor metric {metric!r} for the quality task; choose from {sorted(fns)}"
            )
        return fns[metric]()

    def accuracy_by_intensity(self, preds: pd.DataFrame) -> pd.DataFrame:
        """Accuracy per corrupted class in equal-width bins of its training range (original: one row)."""
        rows = []
        orig = preds[preds["y_true"] == "original"]
        if len(orig):
            rows.append(
                {
                    "class": "original",
                    "bin": "clean",
                    "low": 0.0,
                    "high": 0.0,
                    "accuracy": float((orig["y_pred"] == "original").mean()),
                    "n": len(orig),
                }
            )
        for cls in CLASS_CORRUPTION:
            part = preds[preds["y_true"] == cls]
            if part.empty:
                continue
            lo, hi = self.opts.ranges[cls]
            edges = np.linspace(lo, hi, self.opts.intensity_bins + 1)
            which = np.clip(
                np.searchsorted(edges, part["intensity"].to_numpy(float), side="right") - 1, 0, len(edges) - 2
            )
            for b in range(len(edges) - 1):
                sel = part[which == b]
                if len(sel):
                    rows.append(
                        {
                            "class": cls,
                            "bin": f"{edges[b]:.3g}-{edges[b + 1]:.3g}",
                            "low": edges[b],
                            "high": edges[b + 1],
                            "accuracy": float((sel["y_pred"] == cls).mean()),
                            "n": len(sel),
                        }
                    )
        return pd.DataFrame(rows, columns=["class", "bin", "low", "high", "accuracy", "n"])

    def metrics(self, preds: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        labelled = preds[preds["y_true"] != ""]
        groups = labelled["_group"].to_numpy() if self.cfg.bootstrap_by_group else None
        lookup = {c: i for i, c in enumerate(self.classes)}
        y = labelled["y_true"].map(lookup).to_numpy(dtype=np.int64)
        probs = labelled[self.prob_columns()].to_numpy(float)
        out = classification_metrics(y, probs, self.classes, n_boot, seed, groups)
        out["gate_accuracy"] = float(np.mean((probs[:, 0] < 0.5) == (y != 0))) if len(y) else None
        sev = regression_metrics(
            labelled["ssim_true"].to_numpy(float), labelled["ssim_pred"].to_numpy(float), n_boot, seed, groups
        )
        out["ssim_mae"] = sev["mae"]
        out["ssim_mae_ci95"] = sev["mae_ci95"]
        out["severity"] = sev
        out["per_corruption_accuracy"] = {
            c: float((labelled.loc[labelled["y_true"] == c, "y_pred"] == c).mean())
            for c in self.classes
            if (labelled["y_true"] == c).any()
        }
        out["accuracy_by_intensity"] = self.accuracy_by_intensity(labelled).to_dict("records")
        return out

    def plots(self, preds: pd.DataFrame, metrics: dict[str, Any], plot_dir: Path, split: str) -> list[Path]:
        from sonokit.evaluate.plots import plot_confusion, plot_pred_vs_true, plot_reliability, plot_roc
        from sonokit.quality.plots import plot_accuracy_by_distortion

        labelled = preds[preds["y_true"] != ""]
        if labelled.empty:
            return []
        lookup = {c: i for i, c in enumerate(self.classes)}
        y = labelled["y_true"].map(lookup).to_numpy(dtype=np.int64)
        probs = labelled[self.prob_columns()].to_numpy(float)
        return [
            plot_confusion(
                metrics["confusion_matrix"],
                self.classes,
                plot_dir / f"confusion_{split}.png",
                f"{split}: images (n={len(y)})",
            ),
            plot_roc(y, probs, self.classes, plot_dir / f"roc_{split}.png", f"{split}: ROC one-vs-rest"),
            plot_reliability(probs, y, plot_dir / f"reliability_{split}.png"),
            plot_accuracy_by_distortion(
                pd.DataFrame(metrics["accuracy_by_intensity"]),
                plot_dir / f"accuracy_by_distortion_{split}.png",
            ),
            plot_pred_vs_true(
                labelled["ssim_true"],
                labelled["ssim_pred"],
                plot_dir / f"ssim_{split}.png",
                label="SSIM",
                title=f"{split}: estimated vs true SSIM",
            ),
        ]

    def after_evaluate(self, model, dataset, items, preds, plot_dir, split) -> list[Path]:
        """Grad-CAM overlays on the test split: `gradcam_per_class` images of each true class."""
        if split != "test" or self.opts.gradcam_per_class <= 0 or len(items) == 0:
            return []
        from sonokit.evaluate.plots import plot_overlay
        from sonokit.explain import gradcam, overlay_heatmap

        rng = np.random.default_rng(self.cfg.seed)
        mean, std = self.cfg.channel_stats()
        device = next(model.parameters()).device
        out = []
        for cls in self.classes:
            members = np.flatnonzero(preds["y_true"].to_numpy() == cls)
            for i in rng.permutation(members)[: self.opts.gradcam_per_class]:
                x = normalise_batch(torch.from_numpy(dataset.x[i][None]).to(device), mean, std)
                target = int(np.argmax(preds.loc[i, self.prob_columns()].to_numpy(float)))
                heat = gradcam(model, x, target=target)
                overlay = overlay_heatmap((dataset.x[i][0] * 255).round().astype(np.uint8), heat)
                p = float(preds.loc[i, self.prob_columns()[target]])
                title = (
                    f"true: {cls} | pred: {self.classes[target]} ({p:.2f}) | SSIM "
                    f"{preds.at[i, 'ssim_true']:.2f}, est. {preds.at[i, 'ssim_pred']:.2f}"
                )
                out.append(
                    plot_overlay(overlay, plot_dir / f"gradcam_{split}_{cls}_{len(out):02d}.png", title)
                )
        return out

    # ------------------------------------------------------------------ model card and prediction

    def input_spec(self) -> dict[str, Any]:
        spec = super().input_spec()
        spec.update(
            resize="letterbox (aspect kept, zero padding), area interpolation",
            color="gray (BT.601 luminance)",
            channel_meaning=["grey image"]
            + (["log |Laplacian| at native resolution, area-resized"] if self.opts.highpass else []),
            outputs=[f"logit {c}" for c in self.classes] + ["severity logit: sigmoid = estimated SSIM"],
        )
        return spec

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes, "ranges": {k: list(v) for k, v in self.opts.ranges.items()}}

    def load_state(self, card: dict[str, Any]) -> None:
        self.classes = list(card.get("classes") or QUALITY_CLASSES)

    def predict_items(self, files: Sequence[Path]) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
        rows, errors = [], []
        for f in files:
            try:
                read_gray(f, min_side=MIN_SIDE)
                rows.append({"path": str(f)})
            except InputError as err:
                errors.append((f, str(err)))
        return pd.DataFrame(rows, columns=["path"]), errors
