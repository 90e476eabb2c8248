"""`ef`: ejection fraction regressed from echo clips (two-stream 3D-CNN or EchoNet's R(2+1)D-18).

Training draws one random clip per window of each video and epoch. Evaluation reports two protocols, each with
bootstrap CIs: "all clips" (EchoNet's test-time averaging: the mean over clips every `clip_stride` frames, the
headline `mae`) and "one clip" (a single seeded random clip per video, `one_clip_*`). The mean predictor
(training-set mean EF for every video) is scored beside them as `baseline_mae`. Predictions CSV rows: one per
clip (`frame` = its first frame), plus `frame` = "all" and "one" per video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from sonokit.core.registry import register_task
from sonokit.echo.cine_task import CINE_PREPROCESS, ECHO_DEFAULTS, CineOptions, CineTask
from sonokit.echo.data import ClipDataset, clip_starts, fill_frame_counts
from sonokit.echo.evaluate import baseline_metrics, class_agreement, ef_metrics, plot_ef_agreement
from sonokit.errors import InputError
from sonokit.evaluate.metrics import regression_metrics
from sonokit.utils import get_logger

log = get_logger(__name__)

ALL, ONE = "all", "one"


class EFOptions(CineOptions):
    frames: int = Field(16, ge=2, description="frames per clip")
    period: int = Field(4, ge=1, description="take every period-th frame")
    clip_stride: int = Field(16, ge=1, description="all-clips protocol: a clip every N frames (1 = EchoNet)")
    pad: int = Field(
        8, ge=0, description="training: random shift by up to pad pixels (EchoNet's pad-and-crop)"
    )
    temporal_pad: Literal["repeat", "zero"] = Field(
        "repeat",
        description="a clip longer than the cine loops it (repeat) or adds black frames (zero, EchoNet)",
    )


def _mean_ef_rows(preds: pd.DataFrame, key: str) -> pd.DataFrame:
    return preds[preds["frame"] == key]


@register_task
class EFTask(CineTask):
    name = "ef"
    kind = "regression"
    monitor = ("mae", "min")
    headline = ("mae", "rmse", "r2")
    Options = EFOptions
    opts: EFOptions
    intended_use = (
        "Research: estimate the left-ventricular ejection fraction (%) from an apical four-chamber echo cine. "
        "Trained on the data set named in this card; not validated for clinical use."
    )
    data_hint = "ECHONET_FOLDER (FileList.csv, Videos/) or a table"
    pipeline = "EF"
    augment_note = (
        "its training clips are shifted by up to options.pad pixels (EchoNet's pad-and-crop), which "
        "augment.enabled: false turns off"
    )
    defaults = {
        **ECHO_DEFAULTS,
        "model": "two-stream",
        "epochs": 30,
        "batch_size": 8,
        "lr": 0.001,
        "patience": 10,
        "options": {
            "frames": 16,
            "period": 4,
            "clip_stride": 16,
            "pad": 8,
            "temporal_pad": "repeat",
            "thresholds": "default",
        },
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.train_mean: float | None = None
        self.train_fps: float | None = None

    # ------------------------------------------------------------------ data

    def prepare_index(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        index = super().prepare_index(df)
        train = index[index["split"] == "train"]
        if self.train_mean is None and len(train):  # a loaded run keeps the mean of its own training data
            self.train_mean = float(train["ef"].mean())
            fps = pd.to_numeric(train["fps"], errors="coerce").dropna()
            self.train_fps = float(fps.median()) if len(fps) else None
        return index

    def expand(self, df: pd.DataFrame) -> pd.DataFrame:
        """One row per clip start of the all-clips protocol (training re-draws each start within its window)."""
        df = fill_frame_counts(df.reset_index(drop=True))
        o = self.opts
        parts = []
        for _, row in df.iterrows():
            starts = clip_starts(int(row["n_frames"]), o.frames, o.period, o.clip_stride)
            parts.append(pd.DataFrame({**{k: [row[k]] * len(starts) for k in df.columns}, "clip": starts}))
        if not parts:
            return df.assign(clip=pd.Series(dtype=np.int64))
        return pd.concat(parts, ignore_index=True)

    def build_dataset(self, df: pd.DataFrame, train: bool) -> ClipDataset:
        o = self.opts
        # the clip's start is still drawn within its window in training: that is sampling, not augmentation
        pad = o.pad if not train or self.augment_config().enabled else 0
        return ClipDataset(
            df,
            self.cfg.size,
            self.cfg.channels,
            o.frames,
            o.period,
            o.clip_stride,
            o.temporal_pad,
            train=train,
            pad=pad,
            seed=self.cfg.seed,
            store=self.store,
        )

    def describe_data(self, index: pd.DataFrame, items: dict[str, pd.DataFrame]) -> dict[str, Any]:
        info = super().describe_data(index, items)
        info["ef_mean_train"] = self.train_mean
        info["fps_median_train"] = self.train_fps
        return info

    # ------------------------------------------------------------------ model and step

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        """A registered video network, its output bias at the training mean EF; EchoNet-Dynamic checkpoints must
        match the R(2+1)D-18 completely, other weight files may be partial."""
        ef_mean = self.train_mean if self.train_mean is not None else 55.0
        strict = self.cfg.model == "r2plus1d_18"
        return self.build_network("video", load_init_weights, ef_mean=ef_mean, strict=strict)

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return super().forward(model, batch).squeeze(1)

    def loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return nn.functional.mse_loss(outputs.float(), batch["y"].float())

    def collect(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        return {
            "index": batch["index"].detach().cpu().numpy(),
            "pred": outputs.detach().float().cpu().numpy(),
            "y": batch["y"].detach().float().cpu().numpy(),
        }

    # ------------------------------------------------------------------ predictions and metrics

    def _one_clip(self, n: int, key: str) -> int:
        """The one-clip protocol's clip of a video: seeded by the run's seed and the video, so it is repeatable."""
        import zlib

        return int(np.random.default_rng([abs(self.cfg.seed), zlib.crc32(key.encode())]).integers(0, n))

    def predictions(self, collected: dict[str, np.ndarray], items: pd.DataFrame) -> pd.DataFrame:
        rows = items.iloc[collected["index"]].reset_index(drop=True)
        y = collected["y"]
        clips = pd.DataFrame(
            {
                "path": rows["path"].astype(str).to_numpy(),
                "frame": rows["clip"].astype(int).astype(str).to_numpy(),
                "protocol": "clip",
                "y_true": np.where(y >= 0, y, np.nan),
                "y_pred": collected["pred"].astype(float),
                "_group": rows["group"].astype(str).to_numpy()
                if "group" in rows.columns
                else rows["path"].astype(str),
            }
        )
        videos = []
        for path, g in clips.groupby("path", sort=False):
            base = {"path": path, "y_true": g["y_true"].iloc[0], "_group": g["_group"].iloc[0]}
            videos.append(
                {**base, "frame": ALL, "protocol": f"all clips (n={len(g)})", "y_pred": g["y_pred"].mean()}
            )
            pick = g.iloc[self._one_clip(len(g), str(path))]
            videos.append(
                {
                    **base,
                    "frame": ONE,
                    "protocol": f"one clip (start {pick['frame']})",
                    "y_pred": pick["y_pred"],
                }
            )
        out = pd.concat([clips, pd.DataFrame(videos, columns=clips.columns)], ignore_index=True)
        from sonokit.clinical import get_thresholds

        preset = get_thresholds(self.opts.thresholds)
        out["class_pred"] = [preset.classify(v) if np.isfinite(v) else "" for v in out["y_pred"]]
        out["class_true"] = [preset.classify(v) if np.isfinite(v) else "" for v in out["y_true"]]
        return out

    def score(self, collected: dict[str, np.ndarray], items: pd.DataFrame, metric: str) -> float:
        rows = items.iloc[collected["index"]]
        per_video = pd.DataFrame(
            {"path": rows["path"].to_numpy(), "y": collected["y"], "p": collected["pred"]}
        )
        per_video = per_video.groupby("path", sort=False).mean()
        t, p = per_video["y"].to_numpy(float), per_video["p"].to_numpy(float)
        fns = {
            "mae": lambda: float(np.mean(np.abs(p - t))),
            "rmse": lambda: float(np.sqrt(np.mean((p - t) ** 2))),
            "r2": lambda: regression_metrics(t, p, 0)["r2"] or float("nan"),
        }
        if metric not in fns:
            raise InputError(f"unknown monitor metric {metric!r} for ef; choose from {sorted(fns)}")
        return fns[metric]()

    def metrics(self, preds: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        allc = _mean_ef_rows(preds, ALL).dropna(subset=["y_true"])
        one = _mean_ef_rows(preds, ONE).dropna(subset=["y_true"])
        groups = allc["_group"].to_numpy() if self.cfg.bootstrap_by_group else None
        out = ef_metrics(allc["y_true"], allc["y_pred"], n_boot, seed, groups)
        o = self.opts
        out["protocol"] = (
            f"all clips: {o.frames} frames every {o.period}, a clip every {o.clip_stride} frames"
        )
        out["n_videos"] = int(len(allc))
        out["n_clips"] = int((preds["protocol"] == "clip").sum())
        ogroups = one["_group"].to_numpy() if self.cfg.bootstrap_by_group else None
        out.update(ef_metrics(one["y_true"], one["y_pred"], n_boot, seed, ogroups, prefix="one_clip_"))
        out.update(baseline_metrics(allc["y_true"].to_numpy(float), self.train_mean, n_boot, seed, groups))
        out["heart_function"] = class_agreement(allc["y_true"], allc["y_pred"], o.thresholds)
        out["heart_function_one_clip"] = class_agreement(one["y_true"], one["y_pred"], o.thresholds)
        return out

    def plots(self, preds: pd.DataFrame, metrics: dict[str, Any], plot_dir: Path, split: str) -> list[Path]:
        from sonokit.evaluate.plots import plot_pred_vs_true

        allc = _mean_ef_rows(preds, ALL).dropna(subset=["y_true"])
        one = _mean_ef_rows(preds, ONE).dropna(subset=["y_true"])
        if allc.empty:
            return []
        # model selection needs one look; the full set is for held-out data
        full = split not in ("train", "val")
        title = (
            f"{split}: all clips, MAE {metrics['mae']:.2f} (mean predictor "
            f"{metrics['baseline_mae'] or float('nan'):.2f})"
        )
        out = plot_ef_agreement(
            allc["y_true"],
            allc["y_pred"],
            plot_dir,
            split,
            title,
            metrics["heart_function"] if full else None,
        )
        if full:
            out.append(
                plot_pred_vs_true(
                    one["y_true"],
                    one["y_pred"],
                    plot_dir / f"ef_pred_vs_true_one_clip_{split}.png",
                    "EF (%)",
                    f"{split}: one clip, MAE {metrics['one_clip_mae']:.2f}",
                )
            )
        return out

    # ------------------------------------------------------------------ model card and prediction

    def input_spec(self) -> dict[str, Any]:
        spec = super().input_spec()
        o = self.opts
        spec.update(
            layout="(B, C, T, H, W) clip",
            frames=o.frames,
            period=o.period,
            clip_stride=o.clip_stride,
            fps=self.train_fps,
            preprocess=CINE_PREPROCESS,
        )
        return spec

    def export_recipe(self) -> dict[str, Any]:
        from sonokit.tasks.recipe import echo_recipe

        return echo_recipe(
            self,
            layout="NCTHW",
            clip_sampling=f"sonokit only ({self.opts.frames} frames, period {self.opts.period}, clips per study)",
            output={"tensor": "ejection fraction in percent (batch, 1)"},
        )

    def state(self) -> dict[str, Any]:
        return {"classes": None, "train_mean": self.train_mean, "train_fps": self.train_fps}

    def load_state(self, card: dict[str, Any]) -> None:
        self.train_mean = card.get("train_mean")
        self.train_fps = card.get("train_fps")
