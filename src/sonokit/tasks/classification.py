"""Image classification systems: `classify` (any table or image folder), `fetal-plane` and `lus` (lung score).

All three train on single images or single video frames. When an item comes from a video (an AVI, MP4 or
multi-frame DICOM), its frame predictions are also aggregated into one video row (`frame` = "all") by the
`video_rule`: "mean" averages the frame probabilities; "max" takes the most severe frame (the highest predicted
class, and among those the most confident frame), which is how lung ultrasound scores a clip clinically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from sonokit.augment.config import AUGMENT_OPTIONS
from sonokit.core.registry import register_task
from sonokit.errors import InputError
from sonokit.evaluate.metrics import accuracy, auroc_ovr, classification_metrics, macro_f1, top_k_accuracy
from sonokit.tasks.base import ItemDataset, Task, TaskOptions, normalise_batch
from sonokit.utils import get_logger

log = get_logger(__name__)

VIDEO_ROW = "all"


class ClassificationOptions(TaskOptions):
    classes: list[str] | None = None  # fixed class order; default: sorted labels of the index
    video_rule: Literal["mean", "max"] = "mean"
    # the classes are ordered scores (class index = score, e.g. the lung score 0-3): metrics add quadratic-weighted
    # kappa and MAE in score points per frame and per video, and per patient the sum of the clip scores
    ordinal: bool = False
    frame_every: int = 1  # training/evaluation: use every n-th frame of a video
    max_frames: int | None = None  # ... and at most this many per video (evenly spread)
    # training only: every epoch draws this many of each video's frames afresh (from every frame_every-th frame,
    # max_frames not applied), so the run sees many more distinct frames than a fixed subset at the same cost
    train_frames_per_epoch: int | None = Field(None, ge=1)
    predict_every: int = 1  # prediction on new videos: every n-th frame gets a row
    gradcam_samples: int = 0  # Grad-CAM overlays of this many test images in plots/
    # a table listing one file under two groups, splits or labels: "refuse" (an error) or "keep" (a warning)
    conflicting_rows: Literal["refuse", "keep"] = "refuse"
    # training only: mixup (Zhang et al. 2018) with this Beta(alpha, alpha): each batch is blended with a shuffled
    # copy of itself and the loss with both labels; null = off
    mixup: float | None = Field(None, gt=0.0)


class ClassificationTask(Task):
    """Softmax classifier over letterboxed grayscale (or RGB) images / frames."""

    kind = "classification"
    monitor = ("macro_f1", "max")
    Options = ClassificationOptions
    opts: ClassificationOptions
    augment_options = AUGMENT_OPTIONS  # the torchvision pipeline (train_augment) applies every option

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self._criterion: nn.Module | None = None
        # balance: weights: the training loss's class weights, kept in the task state so that a loaded run
        # reports the loss training reported (evaluate, predict with labels)
        self.class_weights: list[float] | None = None

    # ------------------------------------------------------------------ data

    def read_index(self) -> pd.DataFrame:
        from sonokit.data import load_index

        if self.cfg.data is None:
            raise InputError("no dataset given: pass --data PATH")
        kw: dict[str, Any] = {"path_col": self.cfg.path_col, "label_col": self.cfg.label_col}
        if self.cfg.group_col:
            kw["group_col"] = self.cfg.group_col
        if self.cfg.split_col and not self.cfg.ignores_given_splits:
            kw["split_col"] = self.cfg.split_col
        if self.opts.conflicting_rows != "refuse":
            kw["conflicting_rows"] = self.opts.conflicting_rows
        df = load_index(self.cfg.data, **kw)
        if "label" not in df.columns:
            raise InputError("the dataset has no labels", self.cfg.data)
        return df

    def setup_classes(self, df: pd.DataFrame) -> None:
        from sonokit.data import class_names
        from sonokit.data.validate import require_known_labels

        if self.classes:  # a trained model's classes (from its card) are kept; the data must fit them
            require_known_labels(df["label"].astype(str), self.classes, self.cfg.data or "index")
            return
        classes = list(self.opts.classes) if self.opts.classes else class_names(df)
        require_known_labels(df["label"].astype(str), classes, self.cfg.data or "index")
        if len(classes) < 2:
            raise InputError(f"classification needs at least 2 classes, found {classes}", self.cfg.data)
        self.classes = classes

    def thumbnail_reader(self) -> Callable[[str], tuple[np.ndarray, dict[str, Any]]]:
        """The letterboxed frames ImageDataset trains on (same recipe, same cache entries): read once."""
        from sonokit.data.cache import PreprocessedCache
        from sonokit.data.frames import LetterboxRecipe

        cache = PreprocessedCache(LetterboxRecipe(self.cfg.size, self.cfg.channels))

        def read(path: str) -> tuple[np.ndarray, dict[str, Any]]:
            entry = cache.entry(path)
            return entry.frames, entry.meta

        return read

    def expand(self, df: pd.DataFrame) -> pd.DataFrame:
        from sonokit.data import expand_video_frames

        o = self.opts
        training = o.train_frames_per_epoch and "split" in df.columns and (df["split"] == "train").all()
        return expand_video_frames(df, every=o.frame_every, max_frames=None if training else o.max_frames)

    def epoch_groups(self, train_items: pd.DataFrame) -> tuple[list[np.ndarray], int] | None:
        """With train_frames_per_epoch: one group of rows per video (a still image is a group of one)."""
        if not self.opts.train_frames_per_epoch:
            return None
        codes = pd.factorize(train_items["path"].astype(str))[0]
        order = np.argsort(codes, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
        return groups, int(self.opts.train_frames_per_epoch)

    def build_dataset(self, df: pd.DataFrame, train: bool) -> ItemDataset:
        from sonokit.data import ImageDataset

        base = ImageDataset(df, self.classes, size=self.cfg.size, channels=self.cfg.channels)
        return ItemDataset(base, self.train_augment() if train else None, seed=self.cfg.seed)

    def array_batch(self, images: Sequence[np.ndarray]) -> dict[str, Any]:
        """ImageDataset's input (grey or RGB as trained, letterboxed to the run's size, /255), unlabelled."""
        from sonokit.data.datasets import letterbox, to_channels

        c, s = self.cfg.channels, self.cfg.size
        x = np.stack([letterbox(to_channels(im, c), s).transpose(2, 0, 1) for im in images]).astype(
            np.float32
        )
        n = len(images)
        return {
            "x": torch.from_numpy(x / 255.0),
            "y": torch.full((n,), -1, dtype=torch.long),
            "index": torch.arange(n),
        }

    def _targets(self, df: pd.DataFrame) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes or [])}
        return df["label"].astype(str).map(lookup).to_numpy(dtype=np.int64)

    def class_counts(self, df: pd.DataFrame) -> np.ndarray:
        return np.bincount(self._targets(df), minlength=len(self.classes or []))

    def sample_weights(self, df: pd.DataFrame) -> np.ndarray:
        """1 / class frequency per item: a WeightedRandomSampler then draws classes equally often."""
        counts = self.class_counts(df).astype(float)
        return 1.0 / counts[self._targets(df)]

    def describe_data(self, index: pd.DataFrame, items: dict[str, pd.DataFrame]) -> dict[str, Any]:
        info = super().describe_data(index, items)
        info["class_counts"] = {
            split: dict(zip(self.classes or [], self.class_counts(df).tolist(), strict=True))
            for split, df in items.items()
        }
        from sonokit.data.frames import may_have_frames

        videos = {
            split: sum(may_have_frames(p) for p in df["path"].astype(str).unique())
            for split, df in items.items()
        }
        if any(videos.values()):
            info["videos"] = videos
        return info

    # ------------------------------------------------------------------ model and step

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        from sonokit.models import create

        return create(
            self.cfg.model,
            num_classes=len(self.classes or []),
            in_chans=self.cfg.channels,
            head=self.cfg.head,
            pretrained=self.cfg.pretrained if load_init_weights else None,
            weights=self.cfg.weights if load_init_weights else None,
            dropout=self.cfg.dropout,
            img_size=self.cfg.size,
        )

    def setup_loss(self, train_items: pd.DataFrame, device: torch.device) -> None:
        self.class_weights = None
        if self.cfg.balance == "weights":
            counts = self.class_counts(train_items).astype(float)
            # inverse frequency, mean 1 over the classes present; absent classes get weight 0
            w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
            self.class_weights = [float(v) for v in w]
        self._criterion = self._make_criterion(device)

    def _make_criterion(self, device: torch.device) -> nn.Module:
        weight = None
        if self.class_weights is not None:
            weight = torch.tensor(self.class_weights, dtype=torch.float32, device=device)
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=self.cfg.label_smoothing)

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        mean, std = self.cfg.channel_stats()
        x = normalise_batch(batch["x"], mean, std)
        if model.training and self.opts.mixup and len(x) > 1:
            # torch's global generator: the engine seeds it per run, so a mixed run repeats
            alpha = torch.tensor(float(self.opts.mixup))
            lam = float(torch.distributions.Beta(alpha, alpha).sample())
            perm = torch.randperm(len(x), device=x.device)
            x = lam * x + (1 - lam) * x[perm]
            batch["mixup"] = (perm, lam)
        return model(x)

    def loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        if self._criterion is None:  # a loaded run: the training loss, from the task state
            self._criterion = self._make_criterion(outputs.device)
        logits, y = outputs.float(), batch["y"].long()
        if "mixup" in batch:
            perm, lam = batch["mixup"]
            return lam * self._criterion(logits, y) + (1 - lam) * self._criterion(logits, y[perm])
        return self._criterion(logits, y)

    def collect(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        return {
            "index": batch["index"].detach().cpu().numpy(),
            "probs": torch.softmax(outputs.detach().float(), dim=1).cpu().numpy(),
            "y": batch["y"].detach().cpu().numpy(),
        }

    # ------------------------------------------------------------------ predictions and metrics

    def prob_columns(self) -> list[str]:
        return [f"p_{c}" for c in self.classes or []]

    def predictions(self, collected: dict[str, np.ndarray], items: pd.DataFrame) -> pd.DataFrame:
        classes = np.asarray(self.classes, dtype=object)
        rows = items.iloc[collected["index"]].reset_index(drop=True)
        probs = collected["probs"]
        y = collected["y"]
        frames = _frame_strings(rows)
        out = pd.DataFrame(
            {
                "path": rows["path"].astype(str).to_numpy(),
                "frame": frames,
                "y_true": np.where(y >= 0, classes[np.clip(y, 0, None)], ""),
                "y_pred": classes[probs.argmax(axis=1)],
            }
        )
        for j, col in enumerate(self.prob_columns()):
            out[col] = probs[:, j]
        out["_group"] = rows["group"].astype(str).to_numpy() if "group" in rows.columns else out["path"]
        video = self.video_rows(out)
        return pd.concat([out, video], ignore_index=True) if len(video) else out

    def video_rows(self, frames: pd.DataFrame) -> pd.DataFrame:
        """One aggregated row per video with more than one frame row."""
        cols = self.prob_columns()
        multi = frames[frames["frame"] != ""]
        sizes = multi.groupby("path", sort=False)["frame"].transform("size")
        multi = multi[sizes > 1]
        if multi.empty:
            return pd.DataFrame(columns=frames.columns)
        lookup = {c: i for i, c in enumerate(self.classes or [])}
        out = []
        for path, g in multi.groupby("path", sort=False):
            probs = g[cols].to_numpy(dtype=float)
            truths = [t for t in g["y_true"] if t != ""]
            if self.opts.video_rule == "mean":
                p = probs.mean(axis=0)
                y_true = pd.Series(truths).mode().iloc[0] if truths else ""
            else:
                pred = probs.argmax(axis=1)
                worst = pred.max()
                candidates = np.flatnonzero(pred == worst)
                p = probs[candidates[np.argmax(probs[candidates, worst])]]
                y_true = max(truths, key=lookup.__getitem__) if truths else ""
            row = {
                "path": path,
                "frame": VIDEO_ROW,
                "y_true": y_true,
                "y_pred": self.classes[int(np.argmax(p))],
            }
            row.update(dict(zip(cols, p, strict=True)))
            row["_group"] = g["_group"].iloc[0]
            out.append(row)
        return pd.DataFrame(out, columns=frames.columns)

    def score(self, collected: dict[str, np.ndarray], items: pd.DataFrame, metric: str) -> float:
        y, probs = collected["y"], collected["probs"]
        if metric.startswith("video_"):
            preds = self.predictions(collected, items)
            video = preds[preds["frame"] == VIDEO_ROW]
            if video.empty:
                raise InputError(f"monitor {metric!r} needs video inputs, but no item comes from a video")
            y, probs = self._encode(video["y_true"]), video[self.prob_columns()].to_numpy(dtype=float)
            metric = metric[len("video_") :]
        fns = {
            "accuracy": lambda: accuracy(y, probs.argmax(axis=1)),
            "macro_f1": lambda: macro_f1(y, probs.argmax(axis=1), len(self.classes or [])),
            "top2_accuracy": lambda: top_k_accuracy(y, probs, 2),
            "auroc": lambda: auroc_ovr(y, probs),
        }
        if metric not in fns:
            raise InputError(
                f"unknown monitor metric {metric!r} for classification; choose from {sorted(fns)}"
            )
        return fns[metric]()

    def _encode(self, labels: pd.Series) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes or [])}
        return labels.astype(str).map(lookup).to_numpy(dtype=np.int64)

    def metrics(self, preds: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        """Frame/image-level metrics; with video rows also video_accuracy, video_macro_f1, video_auroc."""
        cols = self.prob_columns()
        labelled = preds[preds["y_true"] != ""]
        items = labelled[labelled["frame"] != VIDEO_ROW]
        groups = items["_group"].to_numpy() if self.cfg.bootstrap_by_group else None
        out = classification_metrics(
            self._encode(items["y_true"]),
            items[cols].to_numpy(float),
            self.classes or [],
            n_boot,
            seed,
            groups,
        )
        video = labelled[labelled["frame"] == VIDEO_ROW]
        if not video.empty:
            vgroups = video["_group"].to_numpy() if self.cfg.bootstrap_by_group else None
            vm = classification_metrics(
                self._encode(video["y_true"]),
                video[cols].to_numpy(float),
                self.classes or [],
                n_boot,
                seed,
                vgroups,
            )
            out["n_videos"] = vm["n"]
            out["video_rule"] = self.opts.video_rule
            for key in ("accuracy", "macro_f1", "auroc"):
                out[f"video_{key}"] = vm[key]
                out[f"video_{key}_ci95"] = vm[f"{key}_ci95"]
            out["video_confusion_matrix"] = vm["confusion_matrix"]
        if self.opts.ordinal:
            out.update(self._ordinal_metrics(labelled, n_boot, seed))
        return out

    def _ordinal_metrics(self, labelled: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        """qwk and score_mae per frame (and video_ per video); per patient, the sum of the clip scores."""
        from sonokit.evaluate.ordinal import ordinal_metrics, patient_sum_metrics

        k = len(self.classes or [])
        by_group = self.cfg.bootstrap_by_group
        out: dict[str, Any] = {}
        items = labelled[labelled["frame"] != VIDEO_ROW]
        groups = items["_group"].to_numpy() if by_group else None
        out.update(
            ordinal_metrics(
                self._encode(items["y_true"]), self._encode(items["y_pred"]), k, n_boot, seed, groups
            )
        )
        video = labelled[labelled["frame"] == VIDEO_ROW]
        if not video.empty:
            vgroups = video["_group"].to_numpy() if by_group else None
            vm = ordinal_metrics(
                self._encode(video["y_true"]), self._encode(video["y_pred"]), k, n_boot, seed, vgroups
            )
            out.update({f"video_{key}": value for key, value in vm.items()})
        clips = clip_rows(labelled)
        out.update(
            patient_sum_metrics(
                self._encode(clips["y_true"]), self._encode(clips["y_pred"]), clips["_group"], n_boot, seed
            )
        )
        return out

    def plots(self, preds: pd.DataFrame, metrics: dict[str, Any], plot_dir: Path, split: str) -> list[Path]:
        from sonokit.evaluate.plots import plot_confusion, plot_reliability, plot_roc

        labelled = preds[(preds["y_true"] != "") & (preds["frame"] != VIDEO_ROW)]
        if labelled.empty:
            return []
        y = self._encode(labelled["y_true"])
        probs = labelled[self.prob_columns()].to_numpy(float)
        unit = "frames" if (labelled["frame"] != "").any() else "images"
        out = [
            plot_confusion(
                metrics["confusion_matrix"],
                self.classes,
                plot_dir / f"confusion_{split}.png",
                f"{split}: {unit} (n={len(y)})",
            ),
            plot_roc(y, probs, self.classes, plot_dir / f"roc_{split}.png", f"{split}: ROC one-vs-rest"),
            plot_reliability(probs, y, plot_dir / f"reliability_{split}.png"),
        ]
        if "video_confusion_matrix" in metrics:
            out.append(
                plot_confusion(
                    metrics["video_confusion_matrix"],
                    self.classes,
                    plot_dir / f"confusion_video_{split}.png",
                    f"{split}: videos, {self.opts.video_rule} rule (n={metrics['n_videos']})",
                )
            )
        return out

    def after_evaluate(self, model, dataset, items, preds, plot_dir, split) -> list[Path]:
        if split != "test" or self.opts.gradcam_samples <= 0 or len(items) == 0:
            return []
        return save_gradcams(self, model, dataset, preds, plot_dir, self.opts.gradcam_samples)

    # ------------------------------------------------------------------ model card and prediction

    def state(self) -> dict[str, Any]:
        state = super().state()
        if self.class_weights is not None:
            state["class_weights"] = self.class_weights
        return state

    def load_state(self, card: dict[str, Any]) -> None:
        super().load_state(card)
        weights = card.get("class_weights")
        self.class_weights = [float(v) for v in weights] if weights is not None else None
        self._criterion = None

    def input_spec(self) -> dict[str, Any]:
        spec = super().input_spec()
        spec.update(
            resize="letterbox (aspect kept, zero padding)",
            color="gray (BT.601 luminance)" if self.cfg.channels == 1 else "rgb",
            frames={
                "every": self.opts.frame_every,
                "max": self.opts.max_frames,
                "video_rule": self.opts.video_rule,
            },
        )
        return spec

    def export_recipe(self) -> dict[str, Any]:
        from sonokit.tasks.recipe import classifier_recipe

        return classifier_recipe(self)

    def predict_items(self, files: Sequence[Path]) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
        from sonokit.data.frames import count_frames, may_have_frames, read_image, sample_indices

        rows: list[dict[str, Any]] = []
        errors: list[tuple[Path, str]] = []
        for f in files:
            try:
                if may_have_frames(f):
                    for i in sample_indices(count_frames(f), self.opts.predict_every):
                        rows.append({"path": str(f), "frame": int(i)})
                else:
                    read_image(f)  # decode once now: a corrupt file is reported here, not mid-batch
                    rows.append({"path": str(f)})
            except InputError as err:
                errors.append((f, str(err)))
        df = pd.DataFrame(rows, columns=["path", "frame"])
        if "frame" in df.columns and df["frame"].isna().all():
            df = df.drop(columns="frame")
        return df, errors


def clip_rows(preds: pd.DataFrame) -> pd.DataFrame:
    """One row per scored clip (zone): a video's aggregated row, else the file's own row (still image, one frame)."""
    has_video = set(preds.loc[preds["frame"] == VIDEO_ROW, "path"])
    return preds[(preds["frame"] == VIDEO_ROW) | ~preds["path"].isin(has_video)]


def _frame_strings(rows: pd.DataFrame) -> np.ndarray:
    """ "" for still images, the frame number for frames of videos/DICOM."""
    from sonokit.data.frames import may_have_frames

    if "frame" not in rows.columns:
        return np.full(len(rows), "", dtype=object)
    frames = pd.to_numeric(rows["frame"], errors="coerce")
    paths = rows["path"].astype(str)
    multi = {p: may_have_frames(p) for p in paths.unique()}
    is_multi = paths.map(multi).to_numpy()
    return np.array(
        [str(int(f)) if m and np.isfinite(f) else "" for f, m in zip(frames, is_multi, strict=True)],
        dtype=object,
    )


def save_gradcams(
    task: ClassificationTask,
    model: nn.Module,
    dataset: ItemDataset,
    preds: pd.DataFrame,
    plot_dir: Path,
    n: int,
) -> list[Path]:
    """Grad-CAM overlays for up to n test items, spread over the true classes (seeded choice)."""
    from sonokit.evaluate.plots import plot_overlay
    from sonokit.explain import gradcam, overlay_heatmap

    items = preds[preds["frame"] != VIDEO_ROW].reset_index(drop=True)
    rng = np.random.default_rng(task.cfg.seed)
    order = rng.permutation(len(items))
    # round-robin over true classes so every class shows up before any repeats
    by_class: dict[str, list[int]] = {}
    for i in order:
        by_class.setdefault(str(items.at[i, "y_true"]), []).append(int(i))
    chosen: list[int] = []
    while len(chosen) < min(n, len(items)):
        for members in by_class.values():
            if members and len(chosen) < n:
                chosen.append(members.pop(0))
    mean, std = task.cfg.channel_stats()
    device = next(model.parameters()).device
    out = []
    for k, i in enumerate(chosen):
        x, _ = dataset.base[i]
        image = dataset.base.load(i)
        x = normalise_batch(x.unsqueeze(0).to(device), mean, std)
        target = int(np.argmax(items.loc[i, task.prob_columns()].to_numpy(float)))
        heat = gradcam(model, x, target=target)
        overlay = overlay_heatmap(image[:, :, 0] if image.shape[2] == 1 else image, heat)
        p = float(items.loc[i, task.prob_columns()[target]])
        title = f"true: {items.at[i, 'y_true']} | pred: {items.at[i, 'y_pred']} ({p:.2f})"
        out.append(plot_overlay(overlay, plot_dir / f"gradcam_{k:02d}.png", title))
    return out


@register_task
class ClassifyTask(ClassificationTask):
    name = "classify"
    intended_use = (
        "Research and teaching: image classification on any labelled ultrasound image folder or table. "
        "Not validated for any clinical purpose."
    )
    defaults = {
        "model": "resnet10_w32",  # whole-image receptive field: +0.036 accuracy on real BUS-BRA over tinycnn (README)
        "size": 96,
        "epochs": 30,
        "patience": 0,
        "min_steps": 300,
        "batch_size": 32,
        "lr": 0.005,
        "augment": {
            "hflip": True
        },  # a mirrored ultrasound image is the same finding (README: +0.014 / +0.027 AUROC)
        "channels_last": True,
    }


@register_task
class FetalPlaneTask(ClassificationTask):
    name = "fetal-plane"
    intended_use = (
        "Research: recognise the standard fetal plane (abdomen, brain, femur, thorax), maternal cervix or other in a "
        "single 2D obstetric ultrasound image (FETAL_PLANES_DB layout). Not validated for any clinical purpose."
    )
    defaults = {
        "model": "resnet10_w32",  # whole-image receptive field: +0.036 accuracy on real BUS-BRA over tinycnn (README)
        "size": 96,
        "epochs": 30,
        "patience": 0,
        "min_steps": 300,
        "batch_size": 32,
        "lr": 0.005,
        "augment": {"hflip": True},
        "channels_last": True,
        # mixup: +0.058 / +0.067 accuracy on the real fetal-plane subset over two seeds (README)
        "options": {"gradcam_samples": 8, "mixup": 0.4},
    }

    def read_index(self) -> pd.DataFrame:
        from sonokit.data import read_fetal_planes

        if self.cfg.data is None:
            raise InputError("no dataset given: pass --data FETAL_PLANES_DB_FOLDER")
        return read_fetal_planes(self.cfg.data)

    def setup_classes(self, df: pd.DataFrame) -> None:
        from sonokit.data.fetal_planes import FETAL_PLANES

        if not self.opts.classes and not self.classes:
            # the published order, whatever subset of planes this copy of the data holds
            self.opts = self.opts.model_copy(update={"classes": list(FETAL_PLANES)})
        super().setup_classes(df)


@register_task
class LUSTask(ClassificationTask):
    name = "lus"
    intended_use = (
        "Research: lung ultrasound aeration score 0-3 per frame and per clip (max rule: the clip takes its most "
        "severe frame). Not validated for any clinical purpose."
    )
    defaults = {
        "model": "resnet10_w32",  # whole-image receptive field, as classify (README)
        "size": 96,
        "epochs": 12,
        "min_steps": 300,
        "batch_size": 32,
        "lr": 0.005,
        "augment": {"hflip": True},
        "channels_last": True,
        "options": {
            "classes": ["0", "1", "2", "3"],
            "video_rule": "max",
            "ordinal": True,
            "frame_every": 2,
            "max_frames": 16,
            "train_frames_per_epoch": 8,
        },
    }
