"""`lv-seg` and `lv-trace`: the LV cavity on single frames, and from it ED/ES, volumes and EF per beat.

Both train on the expert-traced ED and ES frames of an EchoNet-Dynamic folder: lv-seg learns the cavity mask
rasterised from the tracing (U-Net / LR-ASPP / DeepLabV3), lv-trace regresses the 21 lines themselves (84
normalised coordinates in canonical order) with a MobileNetV2. Evaluation measures
    - on the traced frames: Dice (and, for lv-trace, mean end-point distance and chord-length error), and EF by
      Simpson's method from the predicted ED and ES outlines compared with the truth (headline `mae`);
    - on whole cines of the `cine_eval` splits (test by default): the LV area on every frame, ED/ES found as
      its peaks and troughs, EF per beat and its mean (`cine_mae`), and how far the detected ED/ES lie from the
      expert's frames.
Predictions CSV rows: `level` = "frame" (one per evaluated frame), "traced" and "cine" (one per video each).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from sonokit.core.registry import register_task
from sonokit.echo.data import FrameDataset, fill_frame_counts, read_echo_index
from sonokit.echo.evaluate import (
    class_agreement,
    dice,
    ef_metrics,
    mean_with_ci,
    nearest_error,
    plot_area_curve,
)
from sonokit.echo.frames import PreparedStore
from sonokit.echo.tracing import canonical_tracing, tracing_area, tracing_errors
from sonokit.errors import InputError
from sonokit.tasks.base import Task, TaskOptions, normalise_batch
from sonokit.utils import get_logger

log = get_logger(__name__)

PRED_COLUMNS = [
    "path", "level", "frame", "phase", "y_true", "y_pred", "area_pred", "area_true", "volume_pred", "volume_true",
    "dice", "point_error", "chord_length_error", "n_beats", "ed_frames", "es_frames", "beat_efs", "ed_error",
    "es_error", "_group",
]  # fmt: skip


class LVOptions(TaskOptions):
    cine_eval: list[str] = Field(
        default_factory=lambda: ["test"], description="splits also run on every frame"
    )
    thresholds: str = "default"
    augment_strength: float = Field(1.0, ge=0.0, le=2.0)
    appearance_aug: bool = Field(
        False, description="restyle training frames (grey-level curve, gain, TGC, speckle, blur, noise)"
    )
    hflip: bool = Field(False, description="mirror half the training frames, image and tracing together")
    area_plots: int = Field(4, ge=0, description="LV area curves plotted per evaluated split")


class LVTraceOptions(LVOptions):
    volume_loss: float = Field(
        1.0,
        ge=0.0,
        description="weight of |V_pred / V_true - 1| (Simpson's volume of the predicted and the expert "
        "tracing, in torch) added to the coordinate loss; 0 turns it off",
    )
    volume_warmup: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="fraction of the epochs trained on the coordinates alone before the volume loss ramps in "
        "(linearly, over a tenth of the epochs): from the start it stalls the coordinate regression",
    )
    heatmap_loss: float = Field(
        0.01,
        ge=0.0,
        description="landmark models (unet-points): weight of the cross-entropy between each point's softmax "
        "map and a Gaussian (heatmap_sigma pixels) at the true point; 0 trains on coordinates alone",
    )
    heatmap_sigma: float = Field(2.0, gt=0.0, description="pixels of the model input")


def _join(values: Sequence[Any], fmt: str = "{}") -> str:
    return ";".join(fmt.format(v) for v in values)


class LVTask(Task):
    """What lv-seg and lv-trace share: the items, the frame dataset, and the cine-level EF pipeline."""

    allow_hflip = False
    Options = LVOptions
    opts: LVOptions
    target: ClassVar[str] = "mask"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        from sonokit.clinical import get_thresholds

        get_thresholds(self.opts.thresholds)
        self.echonet = None
        self.store = PreparedStore(cfg.size)

    # ------------------------------------------------------------------ data

    def read_index(self) -> pd.DataFrame:
        if self.cfg.data is None:
            raise InputError(
                "no dataset given: pass --data ECHONET_FOLDER (FileList.csv, VolumeTracings.csv)"
            )
        df, self.echonet = read_echo_index(self.cfg.data, need_ef=False)
        if self.echonet is None or not self.echonet.tracings:
            raise InputError(
                f"{self.name} trains on expert tracings: an EchoNet-Dynamic folder with "
                "VolumeTracings.csv is needed",
                self.cfg.data,
            )
        return df

    def _traced(self, name: str) -> dict[int, tuple[str, np.ndarray]]:
        """{frame: (phase, lines)} of a video's usable tracings ({} when there are none)."""
        if self.echonet is None or self.echonet.tracing_problem(name) is not None:
            return {}
        ed, es = self.echonet.ed_es(name)
        lines = self.echonet.tracings[self.echonet.video_path(name).name]
        return {ed: ("ED", lines[ed]), es: ("ES", lines[es])}

    def expand(self, df: pd.DataFrame) -> pd.DataFrame:
        """Traced frames of every video; every frame of the videos in the `cine_eval` splits."""
        df = df.reset_index(drop=True)
        cine = df["split"].astype(str).isin(self.opts.cine_eval) | (df["split"].astype(str) == "")
        if cine.any():
            df = fill_frame_counts(df)
        rows, skipped = [], []
        for i, row in df.iterrows():
            traced = self._traced(str(row["name"]))
            if not traced and not cine[i]:
                skipped.append(str(row["name"]))
                continue
            base = {k: row[k] for k in ("path", "name", "ef", "group", "split", "fps")}
            frames = range(int(row["n_frames"])) if cine[i] else sorted(traced)
            for f in frames:
                phase, lines = traced.get(f, ("", None))
                rows.append({**base, "frame": int(f), "phase": phase, "lines": lines, "cine": bool(cine[i])})
        if skipped:
            log.warning(
                "%d videos without usable tracings left out: %s", len(skipped), ", ".join(skipped[:5])
            )
        cols = ["path", "name", "ef", "group", "split", "fps", "frame", "phase", "lines", "cine"]
        return pd.DataFrame(rows, columns=cols)

    def check_items(self, items: pd.DataFrame) -> None:
        from sonokit.echo.frames import count_cine_frames

        for path in items["path"].astype(str).unique():
            count_cine_frames(path)

    def build_dataset(self, df: pd.DataFrame, train: bool) -> FrameDataset:
        # `augment.enabled: false` (the switch every task has) turns all of it off; the rest is in options
        enabled = bool(self.cfg.augment.get("enabled", True))
        ds = FrameDataset(
            df,
            self.cfg.size,
            self.cfg.channels,
            self.target,
            train=train,
            seed=self.cfg.seed,
            augment_strength=self.opts.augment_strength if enabled else 0.0,
            store=self.store,
            appearance=self.opts.appearance_aug and enabled,
            hflip=self.opts.hflip and enabled,
        )
        if train:
            self.train_dataset = ds  # its epoch (set by the engine) schedules lv-trace's volume loss
        return ds

    def describe_data(self, index: pd.DataFrame, items: dict[str, pd.DataFrame]) -> dict[str, Any]:
        info = super().describe_data(index, items)
        info["videos"] = {split: int(df["path"].nunique()) for split, df in items.items()}
        info["traced_frames"] = {split: int((df["phase"] != "").sum()) for split, df in items.items()}
        return info

    def has_targets(self, batch: dict[str, Any]) -> bool:
        h = batch.get("has_target")
        return bool(h.any()) if isinstance(h, torch.Tensor) else False

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        mean, std = self.cfg.channel_stats()
        return model(normalise_batch(batch["x"], mean, std))

    # ------------------------------------------------------------------ per-item outputs (subclasses)

    def outlines(self, collected: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(predicted masks (N, S, S) bool, true masks (N, S, S) bool, predicted tracings (N, 21, 4) px or None)."""
        raise NotImplementedError

    def volume(self, mask: np.ndarray, lines: np.ndarray | None, where: str = "") -> float:
        """Simpson's volume (pixels**3) of a predicted outline; NaN when the outline cannot be measured (a few
        pixels, no long axis), noted in `self.unmeasured`: one bad prediction is a failed measurement, not a
        failed run."""
        from sonokit.clinical import volume_from_mask, volume_from_tracing

        try:
            return float(volume_from_tracing(lines)) if lines is not None else float(volume_from_mask(mask))
        except InputError as err:
            self.unmeasured.append(f"{where}: {err}")
            return float("nan")

    def area(self, mask: np.ndarray, lines: np.ndarray | None) -> float:
        return tracing_area(lines) if lines is not None else float(mask.sum())

    # ------------------------------------------------------------------ predictions and metrics

    def predictions(self, collected: dict[str, np.ndarray], items: pd.DataFrame) -> pd.DataFrame:
        from sonokit.clinical import volume_from_tracing
        from sonokit.echo.beats import find_beats

        rows = items.iloc[collected["index"]].reset_index(drop=True)
        pred_masks, true_masks, pred_lines = self.outlines(collected)
        self.unmeasured: list[str] = []
        has = collected["has"].astype(bool)
        size = self.cfg.size
        true_lines = collected.get("true_lines")
        frames = []
        for i in range(len(rows)):
            lines_i = pred_lines[i] if pred_lines is not None else None
            rec: dict[str, Any] = {
                "path": rows.at[i, "path"], "level": "frame", "frame": int(rows.at[i, "frame"]),
                "phase": rows.at[i, "phase"], "area_pred": self.area(pred_masks[i], lines_i),
                "_group": str(rows.at[i, "group"]),
            }  # fmt: skip
            if has[i]:
                rec["area_true"] = float(true_masks[i].sum())
                rec["dice"] = dice(pred_masks[i], true_masks[i])
                rec["volume_pred"] = self.volume(
                    pred_masks[i], lines_i, f"{rec['path']} frame {rec['frame']}"
                )
                if true_lines is not None:
                    tl = true_lines[i].reshape(-1, 4) * size
                    rec["volume_true"] = float(volume_from_tracing(tl))
                    rec.update(
                        {k: v for k, v in tracing_errors(lines_i, tl).items() if k != "axis_length_error"}
                    )
            frames.append(rec)
        frame_df = pd.DataFrame(frames, columns=PRED_COLUMNS)

        videos = []
        for path, g in frame_df.groupby("path", sort=False):
            item = rows[rows["path"] == path].iloc[0]
            ef_true = float(item["ef"]) if pd.notna(item["ef"]) else np.nan
            base = {"path": path, "y_true": ef_true, "_group": str(item["group"])}
            traced = g[g["phase"].isin(["ED", "ES"])].set_index("phase")
            if {"ED", "ES"} <= set(traced.index):
                edv, esv = traced.at["ED", "volume_pred"], traced.at["ES", "volume_pred"]
                videos.append(
                    {
                        **base,
                        "level": "traced",
                        "frame": -1,
                        "phase": "ED/ES",
                        "y_pred": _ef_or_nan(edv, esv),
                        "volume_pred": edv,
                        "dice": traced["dice"].mean(),
                    }
                )
            if bool(item["cine"]):
                videos.append(self._cine_row(base, g, rows, pred_masks, pred_lines, traced, find_beats))
        out = pd.concat([frame_df, pd.DataFrame(videos, columns=PRED_COLUMNS)], ignore_index=True)
        if self.unmeasured:
            log.warning(
                "%d predicted LV outlines could not be measured, their EF is NaN (n_failed in the metrics); "
                "first: %s", len(self.unmeasured), self.unmeasured[0],
            )  # fmt: skip
        return out

    def _cine_row(self, base, g, rows, pred_masks, pred_lines, traced, find_beats) -> dict[str, Any]:
        g = g.sort_values("frame")
        area = g["area_pred"].to_numpy(float)
        fps = rows.loc[rows["path"] == base["path"], "fps"].iloc[0]
        fps = float(fps) if pd.notna(fps) and fps else None
        beats = find_beats(area, fps) if len(area) >= 3 else []
        pos = {int(f): int(i) for i, f in zip(g.index, g["frame"], strict=True)}  # frame -> row in outputs
        efs = []
        for b in beats:
            ed_i, es_i = pos[b.ed], pos[b.es]
            edv, esv = (
                self.volume(
                    pred_masks[i],
                    pred_lines[i] if pred_lines is not None else None,
                    f"{base['path']} frame {f}",
                )
                for i, f in ((ed_i, b.ed), (es_i, b.es))
            )
            efs.append(_ef_or_nan(edv, esv))
        true_ed = int(traced.at["ED", "frame"]) if "ED" in traced.index else -1
        true_es = int(traced.at["ES", "frame"]) if "ES" in traced.index else -1
        return {
            **base, "level": "cine", "frame": -1, "phase": "beats",
            "y_pred": float(np.nanmean(efs)) if np.isfinite(efs).any() else np.nan,
            "n_beats": len(beats), "ed_frames": _join([b.ed for b in beats]), "es_frames": _join([b.es for b in beats]),
            "beat_efs": _join(efs, "{:.2f}"), "ed_error": nearest_error([b.ed for b in beats], true_ed),
            "es_error": nearest_error([b.es for b in beats], true_es),
        }  # fmt: skip

    def score(self, collected: dict[str, np.ndarray], items: pd.DataFrame, metric: str) -> float:
        """Dice or point error on the traced frames (cheap, every epoch); "mae" runs the whole EF pipeline."""
        if metric == "mae":
            preds = self.predictions(collected, items)
            traced = preds[preds["level"] == "traced"]
            return float((traced["y_pred"] - traced["y_true"]).abs().mean())
        has = collected["has"].astype(bool)
        sub = {k: v[has] for k, v in collected.items()}
        if metric == "dice":
            pred, true, _ = self.outlines(sub)
            return (
                float(np.mean([dice(p, t) for p, t in zip(pred, true, strict=True)])) if len(pred) else np.nan
            )
        if metric == "point_error" and "pred_lines" in sub:
            s = self.cfg.size
            pairs = zip(
                sub["pred_lines"].reshape(-1, 21, 4) * s,
                sub["true_lines"].reshape(-1, 21, 4) * s,
                strict=True,
            )
            return (
                float(np.mean([tracing_errors(p, t)["point_error"] for p, t in pairs]))
                if has.any()
                else np.nan
            )
        raise InputError(
            f"unknown monitor metric {metric!r} for {self.name}; choose from dice, point_error, mae"
        )

    def metrics(self, preds: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        by_group = self.cfg.bootstrap_by_group
        frames = preds[(preds["level"] == "frame") & preds["dice"].notna()]
        fg = frames["_group"].to_numpy() if by_group else None
        traced = preds[(preds["level"] == "traced")].dropna(subset=["y_true"])
        tg = traced["_group"].to_numpy() if by_group else None
        out = ef_metrics(traced["y_true"], traced["y_pred"], n_boot, seed, tg)
        out["protocol"] = (
            "EF by Simpson's method from the predicted outlines on the expert's ED and ES frames"
        )
        out["n_videos"] = int(len(traced))
        out["n_traced_frames"] = int(len(frames))
        out["dice"], out["dice_ci95"] = mean_with_ci(frames["dice"].to_numpy(float), n_boot, seed, fg)
        for phase in ("ED", "ES"):
            sel = frames[frames["phase"] == phase]
            out[f"dice_{phase.lower()}"] = float(sel["dice"].mean()) if len(sel) else None
        if frames["point_error"].notna().any():
            for key in ("point_error", "chord_length_error"):
                out[key], out[f"{key}_ci95"] = mean_with_ci(frames[key].to_numpy(float), n_boot, seed, fg)
            out["error_units"] = f"pixels of the {self.cfg.size}x{self.cfg.size} model input"
        out["heart_function"] = class_agreement(traced["y_true"], traced["y_pred"], self.opts.thresholds)
        cine = preds[preds["level"] == "cine"].dropna(subset=["y_true"])
        if len(cine):
            cg = cine["_group"].to_numpy() if by_group else None
            out.update(ef_metrics(cine["y_true"], cine["y_pred"], n_boot, seed, cg, prefix="cine_"))
            out["cine_protocol"] = "LV area on every frame, ED/ES = peaks/troughs, EF per beat averaged"
            out["cine_n_videos"] = int(len(cine))
            out["cine_beats_per_video"] = float(cine["n_beats"].astype(float).mean())
            out["cine_no_beat"] = int((cine["n_beats"].astype(float) == 0).sum())
            out["ed_frame_error"] = (
                float(np.nanmean(cine["ed_error"].astype(float))) if cine["ed_error"].notna().any() else None
            )
            out["es_frame_error"] = (
                float(np.nanmean(cine["es_error"].astype(float))) if cine["es_error"].notna().any() else None
            )
            out["heart_function_cine"] = class_agreement(cine["y_true"], cine["y_pred"], self.opts.thresholds)
        return out

    def plots(self, preds: pd.DataFrame, metrics: dict[str, Any], plot_dir: Path, split: str) -> list[Path]:
        from sonokit.evaluate.plots import plot_bland_altman, plot_confusion, plot_pred_vs_true

        out: list[Path] = []
        traced = preds[preds["level"] == "traced"].dropna(subset=["y_true", "y_pred"])
        if len(traced):
            out += [
                plot_pred_vs_true(
                    traced["y_true"],
                    traced["y_pred"],
                    plot_dir / f"ef_pred_vs_true_{split}.png",
                    "EF (%)",
                    f"{split}: Simpson from predicted outlines, ED/ES frames",
                )
            ]
            if split != "test" and not (preds["level"] == "cine").any():
                return out  # model selection needs one look; the full set is for the held-out test split
            out += [
                plot_bland_altman(
                    traced["y_true"], traced["y_pred"], plot_dir / f"ef_bland_altman_{split}.png", "EF (%)"
                ),
            ]
            hf = metrics["heart_function"]
            out.append(
                plot_confusion(
                    hf["confusion_matrix"],
                    hf["labels"],
                    plot_dir / f"ef_classes_{split}.png",
                    f"{split}: heart function ({hf['thresholds']})",
                )
            )
        cine = preds[preds["level"] == "cine"].dropna(subset=["y_true", "y_pred"])
        if len(cine):
            out.append(
                plot_pred_vs_true(
                    cine["y_true"],
                    cine["y_pred"],
                    plot_dir / f"ef_cine_pred_vs_true_{split}.png",
                    "EF (%)",
                    f"{split}: EF per beat on whole cines, averaged",
                )
            )
        frames = preds[preds["level"] == "frame"]
        for k, (path, row) in enumerate(preds[preds["level"] == "cine"].set_index("path").iterrows()):
            if k >= self.opts.area_plots:
                break
            g = frames[frames["path"] == path].sort_values("frame")
            ed = [int(v) for v in str(row["ed_frames"]).split(";") if v not in ("", "nan")]
            es = [int(v) for v in str(row["es_frames"]).split(";") if v not in ("", "nan")]
            phases = g.set_index("phase")["frame"]
            true_ed = int(phases["ED"]) if "ED" in phases.index else None
            true_es = int(phases["ES"]) if "ES" in phases.index else None
            out.append(
                plot_area_curve(
                    g["area_pred"].to_numpy(float),
                    ed,
                    es,
                    plot_dir / f"lv_area_{split}_{k:02d}.png",
                    None,
                    true_ed,
                    true_es,
                    f"{Path(path).name}: EF {row['y_pred']:.1f} (true {row['y_true']:.1f})",
                )
            )
        return out

    # ------------------------------------------------------------------ model card and prediction

    def input_spec(self) -> dict[str, Any]:
        spec = super().input_spec()
        spec.update(
            layout="(B, C, H, W) frame",
            preprocess="frames at size x size used as they are; others: sector crop, centred zero pad, resize",
        )
        return spec

    def export_recipe(self) -> dict[str, Any]:
        from sonokit.tasks.recipe import echo_recipe

        return echo_recipe(self, postprocess="sonokit only (masks/keypoints to LV outline, volumes, EF)")

    def predict_items(self, files: Sequence[Path]) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
        from sonokit.echo.frames import cine_index

        df, errors = cine_index(list(files), "the LV pipeline")
        return (self.expand(df) if len(df) else df), errors


def _pack(masks: np.ndarray) -> np.ndarray:
    return np.packbits(masks.reshape(len(masks), -1).astype(bool), axis=1)


def _unpack(bits: np.ndarray, size: int) -> np.ndarray:
    return np.unpackbits(bits, axis=1, count=size * size).reshape(-1, size, size).astype(bool)


@register_task
class LVSegTask(LVTask):
    name = "lv-seg"
    kind = "segmentation"
    monitor = ("dice", "max")
    headline = ("mae", "rmse", "r2", "dice")
    target = "mask"
    intended_use = (
        "Research: segment the LV cavity on apical four-chamber echo frames; LV area per frame, ED/ES frames, "
        "Simpson volumes and EF per beat. Trained on the data set named in this card; not for clinical use."
    )
    defaults = {
        "model": "unet",
        "size": 112,
        "channels": 3,
        "mean": [0.13],
        "std": [0.19],
        "epochs": 30,
        "batch_size": 16,
        "lr": 0.002,
        "weight_decay": 0.0001,
        "patience": 8,
        "options": {
            "cine_eval": ["test"],
            "thresholds": "default",
            "augment_strength": 1.0,
            "appearance_aug": False,
            "hflip": False,
            "area_plots": 4,
        },
    }

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        from sonokit.echo.seg_models import create_seg_model

        if self.cfg.pretrained not in (None, "", "none"):
            from sonokit.errors import ModelError

            raise ModelError(
                f"--pretrained {self.cfg.pretrained}: nothing can be downloaded here; use --weights PATH"
            )
        model = create_seg_model(self.cfg.model, in_chans=self.cfg.channels)
        if load_init_weights and self.cfg.weights:
            from sonokit.models import load_weights

            load_weights(model, self.cfg.weights)
        return model

    def loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        h = batch["has_target"].bool()
        logits, y = outputs[h].float(), batch["y"][h].float()
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y)
        p = torch.sigmoid(logits)
        inter = (p * y).sum(dim=(1, 2, 3))
        soft_dice = (2 * inter + 1.0) / (p.sum(dim=(1, 2, 3)) + y.sum(dim=(1, 2, 3)) + 1.0)
        return bce + (1.0 - soft_dice).mean()

    def collect(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        pred = (outputs.detach().float() > 0).cpu().numpy()[:, 0]
        true = (batch["y"].detach() > 0.5).cpu().numpy()[:, 0]
        return {
            "index": batch["index"].detach().cpu().numpy(),
            "pred_bits": _pack(pred),
            "true_bits": _pack(true),
            "has": batch["has_target"].detach().cpu().numpy(),
        }

    def outlines(self, collected: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, None]:
        s = self.cfg.size
        return _unpack(collected["pred_bits"], s), _unpack(collected["true_bits"], s), None


@register_task
class LVTraceTask(LVTask):
    name = "lv-trace"
    kind = "keypoints"
    monitor = ("mae", "min")  # val EF MAE: a small point error can hide ED and ES outlines drawn alike
    headline = ("mae", "rmse", "r2", "point_error")
    target = "lines"
    Options = LVTraceOptions
    opts: LVTraceOptions
    intended_use = (
        "Research: trace the LV (long axis and 20 chords, EchoNet layout) on apical four-chamber echo frames; "
        "Simpson volumes, ED/ES and EF per beat. Trained on the data set named in this card; not for clinical use."
    )
    defaults = {
        "model": "mobilenetv2",
        "head": "avg",
        "size": 112,
        "channels": 3,
        "mean": [0.13],
        "std": [0.19],
        "epochs": 40,
        "batch_size": 16,
        "lr": 0.002,
        "weight_decay": 0.0001,
        "patience": 0,
        "options": {
            "cine_eval": ["test"],
            "thresholds": "default",
            "augment_strength": 1.0,
            "area_plots": 4,
            "volume_loss": 1.0,
            "volume_warmup": 0.2,
        },
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.mean_tracing: list[float] | None = None

    def prepare_index(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Also the mean canonical tracing of the training frames: the output layer starts from it."""
        index = super().prepare_index(df)
        if self.mean_tracing is None and self.echonet is not None:
            stack = []
            for name in index.loc[index["split"] == "train", "name"]:
                cine_size = self._video_size(str(name))
                for _, lines in self._traced(str(name)).values():
                    stack.append(canonical_tracing(lines) / cine_size)
            if stack:
                self.mean_tracing = np.mean(stack, axis=0).reshape(-1).round(6).tolist()
        return index

    def _video_size(self, name: str) -> float:
        fl = self.echonet.filelist
        row = fl[fl["FileName"] == self.echonet.video_path(name).name]
        if len(row) and "FrameWidth" in fl.columns and pd.notna(row["FrameWidth"].iloc[0]):
            return float(row["FrameWidth"].iloc[0])
        return float(self.cfg.size)

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        from sonokit.echo.seg_models import POINT_MODELS, create_point_model
        from sonokit.models import create

        if self.cfg.model in POINT_MODELS:
            model = create_point_model(self.cfg.model, in_chans=self.cfg.channels, points=42)
            if load_init_weights and self.cfg.weights:
                from sonokit.models import load_weights

                load_weights(model, self.cfg.weights)
            return model
        model = create(
            self.cfg.model,
            num_classes=84,
            in_chans=self.cfg.channels,
            head=self.cfg.head,
            pretrained=self.cfg.pretrained if load_init_weights else None,
            weights=self.cfg.weights if load_init_weights else None,
            dropout=self.cfg.dropout,
            img_size=self.cfg.size,
        )
        if load_init_weights and not self.cfg.weights and self.mean_tracing is not None:
            last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
            with torch.no_grad():
                last.bias.copy_(torch.tensor(self.mean_tracing, dtype=last.bias.dtype))
                last.weight.mul_(0.1)
        return model

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        """Coordinates (B, 84); a landmark model in training also gives its maps, for the heatmap loss."""
        net = getattr(model, "module", model)
        if model.training and getattr(net, "points", None) and self.opts.heatmap_loss > 0:
            mean, std = self.cfg.channel_stats()
            return model(normalise_batch(batch["x"], mean, std), maps=True)
        return super().forward(model, batch)

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Smooth L1 on the 84 normalised coordinates, plus (`volume_loss`) the relative error of the Simpson
        volume of the predicted tracing, |V_pred / V_true - 1| (bounded gradients, also for a collapsed outline): the coordinate loss alone lets ED and ES shapes drift
        towards the mean shape, which a small point error hides but the EF (a volume ratio) does not."""
        from sonokit.echo.tracing import simpson_volume_torch

        outputs, log_prob = outputs if isinstance(outputs, tuple) else (outputs, None)
        h = batch["has_target"].bool()
        pred, true = outputs[h].float(), batch["y"][h].float()
        loss = nn.functional.smooth_l1_loss(pred, true, beta=0.02)
        if log_prob is not None and len(pred):
            loss = loss + self.opts.heatmap_loss * _gaussian_ce(log_prob[h], true, self.opts.heatmap_sigma)
        weight = self.opts.volume_loss * self._volume_ramp()
        if weight > 0 and len(pred):
            v_pred = simpson_volume_torch(pred.reshape(-1, 21, 4))
            v_true = simpson_volume_torch(true.reshape(-1, 21, 4)).clamp_min(1e-6)
            loss = loss + weight * (v_pred / v_true - 1.0).abs().mean()
        return loss

    def _volume_ramp(self) -> float:
        """0 during the first `volume_warmup` of the epochs, then up to 1 over a tenth of them (1 before a
        training dataset exists)."""
        ds = getattr(self, "train_dataset", None)
        if ds is None or self.opts.volume_warmup <= 0:
            return 1.0
        epochs = max(int(self.cfg.epochs), 1)
        start, ramp = self.opts.volume_warmup * epochs, max(0.1 * epochs, 1.0)
        return float(np.clip((ds.epoch + 1 - start) / ramp, 0.0, 1.0))

    def collect(self, outputs: Any, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        outputs = outputs[0] if isinstance(outputs, tuple) else outputs
        return {
            "index": batch["index"].detach().cpu().numpy(),
            "pred_lines": outputs.detach().float().cpu().numpy(),
            "true_lines": batch["y"].detach().float().cpu().numpy(),
            "has": batch["has_target"].detach().cpu().numpy(),
        }

    def outlines(self, collected: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from sonokit.clinical import rasterize_tracing

        s = self.cfg.size
        pred = collected["pred_lines"].reshape(-1, 21, 4) * s
        true = collected["true_lines"].reshape(-1, 21, 4) * s
        has = collected["has"].astype(bool)
        pred_masks = (
            np.stack([rasterize_tracing(p, (s, s)) for p in pred]) if len(pred) else np.zeros((0, s, s), bool)
        )
        true_masks = (
            np.stack(
                [
                    rasterize_tracing(t, (s, s)) if h else np.zeros((s, s), bool)
                    for t, h in zip(true, has, strict=True)
                ]
            )
            if len(true)
            else pred_masks
        )
        return pred_masks, true_masks, pred

    def state(self) -> dict[str, Any]:
        return {"classes": None, "mean_tracing": self.mean_tracing}

    def load_state(self, card: dict[str, Any]) -> None:
        self.mean_tracing = card.get("mean_tracing")


def _ef_or_nan(edv: float, esv: float) -> float:
    """Simpson EF, or NaN when either volume could not be measured."""
    from sonokit.clinical import ejection_fraction

    return (
        ejection_fraction(edv, esv)
        if np.isfinite(edv) and np.isfinite(esv) and edv > 0 and esv >= 0
        else np.nan
    )


def _gaussian_ce(log_prob: torch.Tensor, points: torch.Tensor, sigma: float) -> torch.Tensor:
    """Cross-entropy of (B, K, H, W) log-probability maps against normalised Gaussians at the (B, 2K) points
    (x, y in units of the side), averaged over maps."""
    b, k, h, w = log_prob.shape
    pts = points.reshape(b, k, 2)
    xs = torch.arange(w, device=log_prob.device, dtype=log_prob.dtype)
    ys = torch.arange(h, device=log_prob.device, dtype=log_prob.dtype)
    gx = torch.exp(-((xs - pts[..., :1] * w) ** 2) / (2 * sigma**2))  # (B, K, W)
    gy = torch.exp(-((ys - pts[..., 1:] * h) ** 2) / (2 * sigma**2))  # (B, K, H)
    g = gy[..., :, None] * gx[..., None, :]
    g = g / g.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return -(g * log_prob).sum(dim=(-2, -1)).mean()
