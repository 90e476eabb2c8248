"""What `lv-seg` and `lv-trace` share: the LV cavity on single frames, and from it ED/ES, volumes and EF per beat.

The tasks themselves are in lv_seg.py and lv_trace.py. Both train on the expert-traced ED and ES frames of an
EchoNet-Dynamic folder: lv-seg learns the cavity mask rasterised from the tracing (U-Net / LR-ASPP / DeepLabV3),
lv-trace regresses the 21 lines themselves (84 normalised coordinates in canonical order) with a MobileNetV2 or a
landmark U-Net. Evaluation measures
    - on the traced frames: Dice (and, for lv-trace, mean end-point distance and chord-length error), and EF by
      Simpson's method from the predicted ED and ES outlines compared with the truth (headline `mae`);
    - on whole cines of the `cine_eval` splits (test by default): the LV area on every frame, ED/ES found as
      its peaks and troughs, EF per beat and its mean (`cine_mae`), and how far the detected ED/ES lie from the
      expert's frames.
Predictions CSV rows: `level` = "frame" (one per evaluated frame), "traced" and "cine" (one per video each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from sonokit.echo.beats import find_beats, finite_mean, join_values
from sonokit.echo.cine_task import CINE_PREPROCESS, ECHO_DEFAULTS, CineOptions, CineTask
from sonokit.echo.data import FrameDataset, fill_frame_counts
from sonokit.echo.evaluate import (
    class_agreement,
    dice,
    ef_metrics,
    mean_with_ci,
    nearest_error,
    plot_area_curve,
    plot_ef_agreement,
)
from sonokit.echo.tracing import tracing_area, tracing_errors
from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

PRED_COLUMNS = [
    "path", "level", "frame", "phase", "y_true", "y_pred", "area_pred", "area_true", "volume_pred", "volume_true",
    "dice", "point_error", "chord_length_error", "n_beats", "ed_frames", "es_frames", "beat_efs", "ed_error",
    "es_error", "_group",
]  # fmt: skip


class LVOptions(CineOptions):
    cine_eval: list[str] = Field(
        default_factory=lambda: ["test"], description="splits also run on every frame"
    )
    augment_strength: float = Field(1.0, ge=0.0, le=2.0)
    appearance_aug: bool = Field(
        False, description="restyle training frames (grey-level curve, gain, TGC, speckle, blur, noise)"
    )
    hflip: bool = Field(False, description="mirror half the training frames, image and tracing together")
    area_plots: int = Field(4, ge=0, description="LV area curves plotted per evaluated split")
    pseudo_labels: str | None = Field(
        None,
        description="a pseudo_labels.csv (`train --unlabelled`): its cines' pseudo-tracings join the training split",
    )


#: The defaults lv-seg and lv-trace share (each task adds its model, epochs and own options).
LV_DEFAULTS: dict[str, Any] = {
    **ECHO_DEFAULTS,
    "batch_size": 16,
    "lr": 0.002,
    "options": {"cine_eval": ["test"], "thresholds": "default", "augment_strength": 1.0},
}


class LVTask(CineTask):
    """What lv-seg and lv-trace share: the items, the frame dataset, and the cine-level EF pipeline."""

    Options = LVOptions
    opts: LVOptions
    target: ClassVar[str] = "mask"
    augment_note = (
        "its frames are rotated, scaled, shifted and changed in gain and gamma with their tracing by "
        "options.augment_strength, restyled by options.appearance_aug and mirrored by options.hflip"
    )
    data_hint = "ECHONET_FOLDER (FileList.csv, VolumeTracings.csv)"
    need_ef = False
    pipeline = "the LV pipeline"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.pseudo: dict[str, dict[int, tuple[str, np.ndarray]]] = {}  # options.pseudo_labels, once read

    # ------------------------------------------------------------------ data

    def read_index(self) -> pd.DataFrame:
        df = super().read_index()
        if self.echonet is None or not self.echonet.tracings:
            raise InputError(
                f"{self.name} trains on expert tracings: an EchoNet-Dynamic folder with "
                "VolumeTracings.csv is needed",
                self.cfg.data,
            )
        return df

    def prepare_index(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """The labelled index with its splits, plus (options.pseudo_labels) one training row per pseudo-labelled
        cine, each its own patient: validation and test stay on the labelled data."""
        index = super().prepare_index(df)
        if not self.opts.pseudo_labels:
            return index
        from sonokit.echo.self_train import PSEUDO_GROUP, read_pseudo_labels

        self.pseudo = read_pseudo_labels(self.opts.pseudo_labels)
        new = [p for p in self.pseudo if p not in set(index["path"].astype(str))]
        rows = pd.DataFrame(
            {"path": new, "name": [Path(p).name for p in new], "ef": np.nan, "label": "",
             "group": [PSEUDO_GROUP + p for p in new], "split": "train", "fps": np.nan, "n_frames": np.nan}
        )  # fmt: skip
        return pd.concat([index, rows], ignore_index=True) if new else index

    def _labelled(self, path: str, name: str) -> dict[int, tuple[str, np.ndarray]]:
        """{frame: (phase, lines)} of a cine: the expert's tracings, or the pseudo-tracings of an unlabelled one."""
        return self.pseudo[path] if path in self.pseudo else self._traced(name)

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
            traced = self._labelled(str(row["path"]), str(row["name"]))
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

    def build_dataset(self, df: pd.DataFrame, train: bool) -> FrameDataset:
        # `augment.enabled: false` (the switch every task has) turns all of it off; the rest is in options
        enabled = self.augment_config().enabled if train else self.cfg.augment.enabled
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
        info["traced_frames"] = {split: int((df["phase"] != "").sum()) for split, df in items.items()}
        if self.pseudo:
            info["pseudo_labelled"] = {
                "source": self.opts.pseudo_labels,
                "cines": len(self.pseudo),
                "frames": sum(len(frames) for frames in self.pseudo.values()),
            }
        return info

    def has_targets(self, batch: dict[str, Any]) -> bool:
        h = batch.get("has_target")
        return bool(h.any()) if isinstance(h, torch.Tensor) else False

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
                videos.append(self._cine_row(base, g, rows, pred_masks, pred_lines, traced))
        out = pd.concat([frame_df, pd.DataFrame(videos, columns=PRED_COLUMNS)], ignore_index=True)
        if self.unmeasured:
            log.warning(
                "%d predicted LV outlines could not be measured, their EF is NaN (n_failed in the metrics); "
                "first: %s", len(self.unmeasured), self.unmeasured[0],
            )  # fmt: skip
        return out

    def _cine_row(
        self,
        base: dict[str, Any],
        g: pd.DataFrame,
        rows: pd.DataFrame,
        pred_masks: np.ndarray,
        pred_lines: np.ndarray | None,
        traced: pd.DataFrame,
    ) -> dict[str, Any]:
        """The `cine` row of one video: its area curve's beats, their Simpson EFs and how far the detected ED/ES
        lie from the expert's frames (`g`: the video's frame rows, `traced`: those of the traced frames)."""
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
        ed, es = [b.ed for b in beats], [b.es for b in beats]
        return {
            **base, "level": "cine", "frame": -1, "phase": "beats", "y_pred": finite_mean(efs),
            "n_beats": len(beats), "ed_frames": join_values(ed), "es_frames": join_values(es),
            "beat_efs": join_values(efs, "{:.2f}"), "ed_error": nearest_error(ed, true_ed),
            "es_error": nearest_error(es, true_es),
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
        from sonokit.evaluate.plots import plot_pred_vs_true

        out: list[Path] = []
        traced = preds[preds["level"] == "traced"].dropna(subset=["y_true", "y_pred"])
        if len(traced):
            # model selection needs one look; the full set is for the held-out test split (and cine splits)
            full = split == "test" or (preds["level"] == "cine").any()
            title = f"{split}: Simpson from predicted outlines, ED/ES frames"
            hf = metrics["heart_function"] if full else None
            out += plot_ef_agreement(traced["y_true"], traced["y_pred"], plot_dir, split, title, hf)
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
        spec.update(layout="(B, C, H, W) frame", preprocess=CINE_PREPROCESS)
        return spec

    def export_recipe(self) -> dict[str, Any]:
        from sonokit.tasks.recipe import echo_recipe

        return echo_recipe(self, postprocess="sonokit only (masks/keypoints to LV outline, volumes, EF)")


def _ef_or_nan(edv: float, esv: float) -> float:
    """Simpson EF, or NaN when either volume could not be measured."""
    from sonokit.clinical import ejection_fraction

    return (
        ejection_fraction(edv, esv)
        if np.isfinite(edv) and np.isfinite(esv) and edv > 0 and esv >= 0
        else np.nan
    )
