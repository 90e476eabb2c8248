"""The published pipeline end to end: detect the valve, crop its box (enlarged by the classifier's margin), classify
calcification; and its held-out evaluation against the heuristic baseline.

Every frame gets one row: status "ok" (box, crop window and probability), "no valve found" (the best peak scored
below the detector's threshold: nothing is cropped or classified), "not applicable" (with the detector run's
applicability check: the frame does not look like its training data, so neither stage answers) or "error" (the
file could not be read: one line saying why; the other files still run). Boxes are in the original image's pixels: the letterbox map is
inverted exactly, and the crop window is the box enlarged and rounded outwards, so crop pixel (u, v) is image
pixel (u + crop_x1, v + crop_y1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sonokit.av.boxes import clip_boxes, detection_metrics, inverse_map
from sonokit.av.data import crop, crop_input, letterbox_gray
from sonokit.av.tables import CALCIFICATION_COLUMNS
from sonokit.core.loop import forward_batch
from sonokit.data.frames import read_gray
from sonokit.errors import InputError
from sonokit.predict.result import PredictionFile
from sonokit.utils import atomic_write_json, get_logger, progress, write_csv

log = get_logger(__name__)

OK, NO_VALVE, NOT_APPLICABLE, ERROR = "ok", "no valve found", "not applicable", "error"
COLUMNS = [
    "path", "frame", "status", "error", "applicable", "applicability", "score", "x1", "y1", "x2", "y2", "crop_x1", "crop_y1", "crop_x2", "crop_y2",
    "p_calcified", "calcified", "crop_path", "y_true", "model_det", "model_cls",
]  # fmt: skip


@dataclass
class FrameResult:
    """The cascade's answer for one frame."""

    status: str
    score: float = 0.0  # best detection score (also when below the threshold)
    box: np.ndarray | None = None  # (4,) original pixels, when status is ok
    window: tuple[int, int, int, int] | None = None  # crop window in original pixels
    crop: np.ndarray | None = None  # uint8 crop pixels
    p_calcified: float = math.nan
    detections: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros((0, 4)), np.zeros(0)))
    applicable: bool | None = None  # the detector's applicability check on the frame (None: no check)
    applicability: float = math.nan


class Cascade:
    """A trained av-detect run and a trained av-calcification run, used together."""

    def __init__(
        self,
        det_run: str | Path,
        cls_run: str | Path,
        device: str = "auto",
        score_threshold: float | None = None,
        margin: float | None = None,
        batch_size: int = 16,
        applicability: bool = False,
    ) -> None:
        """`applicability`: check each frame with the detector run's applicability check (fitted from its own
        data when missing; without one, a warning and no check)."""
        from sonokit.core.run import load_run
        from sonokit.models.embedding import FeatureTap
        from sonokit.systems import VALVE
        from sonokit.uncertainty.applicability import load_check

        self.det = VALVE.require(load_run(det_run, device), "detector")
        self.cls = VALVE.require(load_run(cls_run, device), "classifier")
        dopts, copts = self.det.task.opts, self.cls.task.opts
        self.score_threshold = float(dopts.score_threshold if score_threshold is None else score_threshold)
        self.margin = float(copts.margin if margin is None else margin)
        self.noise_reduction = bool(copts.noise_reduction)
        self.positive = copts.positive
        classes = list(self.cls.task.classes or [])
        if self.positive not in classes:
            raise InputError(
                f"classifier classes {classes} lack the positive class {self.positive!r}", cls_run
            )
        self.pos_index = classes.index(self.positive)
        self.batch_size = int(batch_size)
        self.check = load_check(self.det) if applicability else None
        self._tap = FeatureTap(self.det.model) if self.check is not None else None

    # ------------------------------------------------------------------ the two stages

    def detect(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: (boxes (k, 4) in original pixels, scores (k,)), best first."""
        return self._detect(images)[0]

    @torch.no_grad()
    def _detect(
        self, images: Sequence[np.ndarray]
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[bool | None, float]]]:
        """`detect`, and per image the applicability check's (applicable, applicability) ((None, nan) without)."""
        from sonokit.av.detector import decode

        task, size = self.det.task, self.det.cfg.size
        out: list[tuple[np.ndarray, np.ndarray]] = []
        checks: list[tuple[bool | None, float]] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            prepared = [letterbox_gray(im, size) for im in chunk]
            x = torch.from_numpy(np.stack([p[0] for p in prepared])).float().div_(255.0)[:, None]
            _, raw, _ = forward_batch(task, self.det.model, {"x": x}, self.det.device)
            if self._tap is not None:
                fit = self.check.score(self._tap.take())
                checks += [
                    (bool(a), float(p)) for a, p in zip(fit["applicable"], fit["applicability"], strict=True)
                ]
            else:
                checks += [(None, math.nan)] * len(chunk)
            stride = (size / raw.shape[2], size / raw.shape[3])
            boxes, scores = decode(raw, stride, task.opts.max_detections, task.opts.nms_iou)
            for (_, geo), b, s in zip(prepared, boxes.cpu().numpy(), scores.cpu().numpy(), strict=True):
                keep = s >= 0
                mapped = clip_boxes(
                    inverse_map(b[keep].astype(np.float64), geo.as_array()), geo.height, geo.width
                )
                out.append((mapped, s[keep].astype(np.float64)))
        return out, checks

    @torch.no_grad()
    def classify(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Probability of the calcified class for each uint8 crop."""
        task, size = self.cls.task, self.cls.cfg.size
        probs: list[np.ndarray] = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            x = np.stack([crop_input(c, size, self.noise_reduction) for c in chunk])
            xt = torch.from_numpy(x).float().div_(255.0)[:, None]
            _, logits, _ = forward_batch(task, self.cls.model, {"x": xt}, self.cls.device)
            probs.append(torch.softmax(logits.float(), dim=1)[:, self.pos_index].cpu().numpy())
        return np.concatenate(probs) if probs else np.zeros(0)

    def run(self, images: Sequence[np.ndarray]) -> list[FrameResult]:
        """Detect, crop and classify a list of uint8 gray frames."""
        results = []
        detections, checks = self._detect(images)
        for image, (boxes, scores), (applicable, p) in zip(images, detections, checks, strict=True):
            best = float(scores[0]) if len(scores) else 0.0
            if applicable is False:
                res = FrameResult(NOT_APPLICABLE, best)
            elif not len(scores) or best < self.score_threshold:
                res = FrameResult(NO_VALVE, best, detections=(boxes, scores))
            else:
                pixels, window = crop(image, boxes[0], self.margin)
                res = FrameResult(OK, best, boxes[0], window, pixels, detections=(boxes, scores))
            res.applicable, res.applicability = applicable, p
            results.append(res)
        found = [r for r in results if r.status == OK]
        for r, p in zip(found, self.classify([r.crop for r in found]), strict=True):
            r.p_calcified = float(p)
        return results

    # ------------------------------------------------------------------ files

    def predict_files(
        self,
        inputs: Sequence[str | Path],
        crops_dir: str | Path | None = None,
        every: int = 1,
        decision: float = 0.5,
    ) -> tuple[pd.DataFrame, list[str]]:
        """One row per frame of every input (images: one; videos/DICOM: every `every`-th frame)."""
        from sonokit.data.frames import count_frames, may_have_frames, sample_indices
        from sonokit.io import find_inputs

        rows: list[dict[str, Any]] = []
        errors: list[str] = []
        units: list[tuple[Path, int]] = []
        for raw in inputs:
            try:
                files = find_inputs([raw])
            except InputError as err:
                rows.append(self._error_row(Path(raw), 0, err))
                errors.append(str(err))
                continue
            for f in files:
                try:
                    frames = sample_indices(count_frames(f), every) if may_have_frames(f) else [0]
                except InputError as err:
                    rows.append(self._error_row(f, 0, err))
                    errors.append(str(err))
                    continue
                units += [(f, int(i)) for i in frames]
        names: dict[str, int] = {}
        for start in progress(
            range(0, len(units), self.batch_size),
            desc="av predict",
            total=math.ceil(len(units) / self.batch_size),
            unit="batch",
        ):
            chunk, images = [], []
            for f, i in units[start : start + self.batch_size]:
                try:
                    images.append(read_gray(f, i))
                    chunk.append((f, i))
                except InputError as err:
                    rows.append(self._error_row(f, i, err))
                    errors.append(str(err))
            for (f, i), res in zip(chunk, self.run(images), strict=True):
                row = self.result_row(f, i, res, decision)
                if crops_dir is not None and res.status == OK:
                    pixels = _shown_crop(f, res.crop, res.window)
                    row["crop_path"] = str(self._save_crop(Path(crops_dir), f, i, pixels, names))
                rows.append(row)
        return pd.DataFrame(rows, columns=COLUMNS), errors

    def result_row(self, path: Path, frame: int, res: FrameResult, decision: float = 0.5) -> dict[str, Any]:
        row: dict[str, Any] = {
            "path": str(path),
            "frame": frame,
            "status": res.status,
            "error": "",
            "applicable": "" if res.applicable is None else res.applicable,
            "applicability": res.applicability,
            "score": round(res.score, 6),
            "model_det": self.det.name,
            "model_cls": self.cls.name,
        }
        if res.status == OK:
            row.update(zip(("x1", "y1", "x2", "y2"), (round(float(v), 3) for v in res.box), strict=True))
            row.update(zip(("crop_x1", "crop_y1", "crop_x2", "crop_y2"), res.window, strict=True))
            row["p_calcified"] = round(res.p_calcified, 6)
            row["calcified"] = "yes" if res.p_calcified >= decision else "no"
        return row

    def _error_row(self, path: Path, frame: int, err: Exception) -> dict[str, Any]:
        return {
            "path": str(path),
            "frame": frame,
            "status": ERROR,
            "error": str(err).replace("\n", " "),
            "model_det": self.det.name,
            "model_cls": self.cls.name,
        }

    @staticmethod
    def _save_crop(folder: Path, path: Path, frame: int, pixels: np.ndarray, names: dict[str, int]) -> Path:
        from sonokit.io import write_image

        stem = f"{path.stem}_f{frame}" if frame else path.stem
        k = names.get(stem, 0)
        names[stem] = k + 1
        return write_image(folder / (f"{stem}_{k}.png" if k else f"{stem}.png"), pixels)


def _shown_crop(path: Path, pixels: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """A saved crop shows only what lies inside the file's imaging region (burned-in text near the valve goes)."""
    from sonokit.data.shown import masked_image, region_of

    region = region_of(path)
    x1, y1, x2, y2 = window
    return masked_image(pixels, None if region is None else region[y1:y2, x1:x2])


def predict_to_csv(
    det_run: str | Path,
    cls_run: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    crops_dir: str | Path | None = None,
    every: int = 1,
    device: str = "auto",
    score_threshold: float | None = None,
    labels: str | Path | None = None,
    applicability: bool = True,
) -> PredictionFile:
    """`sonokit av predict`: run the cascade and write the CSV atomically (error rows included)."""
    cascade = Cascade(det_run, cls_run, device, score_threshold, applicability=applicability)
    table, errors = cascade.predict_files(inputs, crops_dir, every)
    if labels is not None:
        from sonokit.av.data import read_av_index

        truth = read_av_index(labels)
        lookup = dict(zip(truth["path"].map(lambda p: str(Path(p).resolve())), truth["label"], strict=True))
        table["y_true"] = table["path"].map(lambda p: lookup.get(str(Path(p).resolve()), ""))
    return PredictionFile(write_csv(table, out), len(table), errors, table)


# ---------------------------------------------------------------------------------------------- evaluation


def evaluation_rows(cascade: Cascade, data: str | Path | None, split: str) -> pd.DataFrame:
    """The labelled frames of `split`, split exactly as the classifier run was (its splits.csv)."""
    from sonokit.av.data import NO_LABEL, read_av_index, split_av_index
    from sonokit.core.run import SPLITS_FILE, apply_saved_splits, is_training_data

    cfg = cascade.cls.cfg
    source = Path(data) if data is not None else Path(cfg.data or "")
    index = read_av_index(source)
    saved = cascade.cls.run_dir / SPLITS_FILE
    if saved.is_file() and is_training_data(cascade.cls, source):
        index = apply_saved_splits(index, saved)
    else:
        index = split_av_index(
            index, (1 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction), cfg.seed
        )
    rows = index if split == "all" else index[index["split"] == split]
    rows = rows[rows["label"] != NO_LABEL].reset_index(drop=True)
    if rows.empty:
        raise InputError(f"no labelled frames in split {split!r}", source)
    det_saved = cascade.det.run_dir / SPLITS_FILE
    if det_saved.is_file():
        det_splits = pd.read_csv(det_saved, dtype=str, keep_default_na=False)
        trained = set(det_splits.loc[det_splits["split"] == "train", "path"])
        leaked = int(rows["path"].isin(trained).sum())
        if leaked:
            log.warning(
                "%d of the %d evaluated frames were in the detector's training split", leaked, len(rows)
            )
    return rows


def evaluate_cascade(
    det_run: str | Path,
    cls_run: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    thresholds: Sequence[int] | None = None,
    min_pixels: Sequence[int] | None = None,
    n_boot: int = 1000,
    device: str = "auto",
) -> dict[str, Any]:
    """Held-out metrics of the cascade (detector boxes), the classifier on true boxes, the detector, and the
    heuristic on both crops; the table goes to out_dir as CSV and Markdown with the predictions.

    A frame where no valve is found counts as "not calcified" (the cascade cannot call it calcified).
    """
    from sonokit.av.heuristic import MIN_PIXELS, THRESHOLDS, best_row, heuristic_table
    from sonokit.av.metrics import binary_metrics

    cascade = Cascade(det_run, cls_run, device)
    rows = evaluation_rows(cascade, data, split)
    frames = [int(f) if pd.notna(f) else 0 for f in rows.get("frame", pd.Series(0, index=rows.index))]
    images = [read_gray(p, f) for p, f in zip(rows["path"], frames, strict=True)]
    results = cascade.run(images)
    truth = (rows["label"] == cascade.positive).to_numpy()
    groups = rows["group"].astype(str).to_numpy()
    p_det = np.array([r.p_calcified if r.status == OK else 0.0 for r in results])
    gt_crops = [
        crop(im, b[0], cascade.margin)[0] if len(b) else im
        for im, b in zip(images, rows["boxes"], strict=True)
    ]
    p_gt = cascade.classify(gt_crops)
    det_crops = [r.crop if r.status == OK else np.zeros((1, 1), np.uint8) for r in results]

    table = [
        {"method": "cascade (CNN)", "boxes": "detector", "model": cascade.cls.name,
         **binary_metrics(truth, p_det >= 0.5, p_det, groups, n_boot)},
        {"method": "CNN", "boxes": "ground truth", "model": cascade.cls.name,
         **binary_metrics(truth, p_gt >= 0.5, p_gt, groups, n_boot)},
    ]  # fmt: skip
    heur = []
    for boxes_name, crops in (("detector", det_crops), ("ground truth", gt_crops)):
        h = heuristic_table(
            crops, truth, groups, thresholds or THRESHOLDS, min_pixels or MIN_PIXELS, n_boot=n_boot
        )
        heur.append(h.assign(boxes=boxes_name))
    heur_df = pd.concat(heur, ignore_index=True)
    table_df = pd.concat([pd.DataFrame(table), heur_df], ignore_index=True)
    det_metrics = detection_metrics(
        [r.detections for r in results],
        list(rows["boxes"]),
        score_threshold=cascade.score_threshold,
        n_boot=n_boot,
        groups=groups,
    )
    paper = heur_df[(heur_df["boxes"] == "detector") & (heur_df["min_pixels"] == 1)]
    best = best_row(paper) if len(paper) else None
    best_any = best_row(heur_df) if len(heur_df) else None
    f1 = table[0]["f1"] if table[0]["f1"] is not None else -1.0
    summary = {
        "split": split,
        "n_frames": int(len(rows)),
        "n_patients": int(len(np.unique(groups))),
        "no_valve_found": int(sum(r.status == NO_VALVE for r in results)),
        "detector": det_metrics,
        "cascade": table[0],
        "classifier_on_true_boxes": table[1],
        # the paper's rule (any white pixel) on the same detector crops, at its best threshold
        "best_heuristic": _row_dict(best),
        "cascade_beats_best_heuristic_f1": None if best is None else bool(f1 > (best["f1"] or -1.0)),
        # every heuristic row: either crop, with a minimum pixel count
        "best_heuristic_any": _row_dict(best_any),
        "cascade_beats_every_heuristic_f1": None if best_any is None else bool(f1 > (best_any["f1"] or -1.0)),
        "rule": "a frame without a detected valve counts as not calcified; decision p >= 0.5",
        "models": {"detector": str(cascade.det.run_dir), "classifier": str(cascade.cls.run_dir)},
    }
    if out_dir is not None:
        from sonokit.av.tables import write_table

        out = Path(out_dir)
        preds = pd.DataFrame(
            [
                cascade.result_row(Path(p), f, r)
                for p, f, r in zip(rows["path"], frames, results, strict=True)
            ],
            columns=COLUMNS,
        )
        preds["y_true"] = rows["label"].to_numpy()
        preds["p_calcified_true_box"] = np.round(p_gt, 6)
        write_csv(preds, out / f"cascade_predictions_{split}.csv")
        write_table(
            table_df,
            out / f"cascade_{split}.csv",
            TABLE_COLUMNS,
            CI_COLUMNS,
            title=f"Calcification on the {split} split ({len(rows)} frames, {summary['n_patients']} patients)",
        )
        atomic_write_json(out / f"cascade_metrics_{split}.json", summary)
    summary["table"] = table_df
    return summary


TABLE_COLUMNS = [*CALCIFICATION_COLUMNS[:2], "model", *CALCIFICATION_COLUMNS[2:]]
CI_COLUMNS = ["f1", "precision", "recall", "specificity"]


def _row_dict(row: pd.Series | None) -> dict[str, Any] | None:
    return None if row is None else {k: _plain(row[k]) for k in row.index}


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
