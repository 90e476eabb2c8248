"""Box geometry and detection metrics: IoU, letterbox and crop coordinate maps, matching, AP@0.5.

Boxes are float (x1, y1, x2, y2) in continuous pixel coordinates: the top-left corner of pixel (0, 0) is (0, 0)
and a box covering pixels 10..19 is (10, 20). Every map between the original image, the model input (letterbox)
and a crop is an exact affine map with its inverse here, so the cascade reports boxes in the user's pixels.

Detection metrics follow PASCAL VOC: detections are matched greedily by descending score to the unmatched
ground-truth box of highest IoU >= 0.5; AP is the area under the all-point interpolated precision-recall curve.
Point metrics (precision, recall, F1, mean IoU) use detections with score >= the operating threshold.
Written here rather than taken from torchmetrics because its mAP needs pycocotools (not installed) and because
the bootstrap resamples images, which needs the per-image match results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------- geometry


def as_boxes(boxes: Any) -> np.ndarray:
    """Any (4,) or (n, 4) array-like -> float64 (n, 4)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    return arr.reshape(-1, 4)


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Pairwise IoU (n, m) of two box sets; empty boxes give 0, not NaN."""
    a, b = as_boxes(a), as_boxes(b)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class Letterbox:
    """The map from an original (h, w) image to the square model input of side `size` (aspect kept, padded).

    Mirrors sonokit.data.datasets.letterbox exactly: the resized image is round(h * s) x round(w * s) with
    s = size / max(h, w), pasted at ((size - nw) // 2, (size - nh) // 2). The per-axis scales use the rounded
    sizes, so the map is the one the resampled pixels really follow.
    """

    height: int
    width: int
    size: int

    @property
    def resized(self) -> tuple[int, int]:
        s = self.size / max(self.height, self.width)
        return max(1, round(self.height * s)), max(1, round(self.width * s))

    @property
    def scale(self) -> tuple[float, float]:
        nh, nw = self.resized
        return nw / self.width, nh / self.height

    @property
    def offset(self) -> tuple[int, int]:
        nh, nw = self.resized
        return (self.size - nw) // 2, (self.size - nh) // 2

    def as_array(self) -> np.ndarray:
        """(sx, sy, left, top): what a batch carries so predictions can be mapped back."""
        (sx, sy), (left, top) = self.scale, self.offset
        return np.array([sx, sy, left, top], dtype=np.float64)

    def to_input(self, boxes: Any) -> np.ndarray:
        return forward_map(boxes, self.as_array())

    def to_original(self, boxes: Any) -> np.ndarray:
        return inverse_map(boxes, self.as_array())


def forward_map(boxes: Any, geo: Sequence[float]) -> np.ndarray:
    """Original pixels -> model input pixels with geo = (sx, sy, left, top)."""
    b = as_boxes(boxes).copy()
    sx, sy, left, top = (float(g) for g in geo)
    b[:, [0, 2]] = b[:, [0, 2]] * sx + left
    b[:, [1, 3]] = b[:, [1, 3]] * sy + top
    return b


def inverse_map(boxes: Any, geo: Sequence[float]) -> np.ndarray:
    """Model input pixels -> original pixels (the inverse of forward_map)."""
    b = as_boxes(boxes).copy()
    sx, sy, left, top = (float(g) for g in geo)
    b[:, [0, 2]] = (b[:, [0, 2]] - left) / sx
    b[:, [1, 3]] = (b[:, [1, 3]] - top) / sy
    return b


def clip_boxes(boxes: Any, height: int, width: int) -> np.ndarray:
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return b


def crop_window(box: Sequence[float], margin: float, height: int, width: int) -> tuple[int, int, int, int]:
    """The integer pixel window (x1, y1, x2, y2) to crop: the box enlarged by `margin` x its size on each side,
    rounded outwards and clipped to the image; at least one pixel wide and high.

    The margin keeps calcium on the annulus edge inside the crop even when the box is a few pixels tight.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    cx1 = int(np.clip(math.floor(x1 - mx), 0, width - 1))
    cy1 = int(np.clip(math.floor(y1 - my), 0, height - 1))
    cx2 = int(np.clip(math.ceil(x2 + mx), cx1 + 1, width))
    cy2 = int(np.clip(math.ceil(y2 + my), cy1 + 1, height))
    return cx1, cy1, cx2, cy2


def crop_to_original(points_or_boxes: Any, window: Sequence[int]) -> np.ndarray:
    """Crop coordinates -> original image coordinates: a shift by the window's top-left corner.

    Accepts (n, 2) points or (n, 4) boxes.
    """
    arr = np.asarray(points_or_boxes, dtype=np.float64).copy()
    shift = np.array([window[0], window[1]], dtype=np.float64)
    flat = arr.reshape(-1, arr.shape[-1])
    flat[:, 0::2] += shift[0]
    flat[:, 1::2] += shift[1]
    return flat.reshape(arr.shape)


# ---------------------------------------------------------------------------------------------- matching


@dataclass
class ImageResult:
    """One image's detections (scores descending) and ground truth, matched at one IoU threshold."""

    scores: np.ndarray  # (k,)
    tp: np.ndarray  # (k,) bool: matched a ground-truth box
    best_iou: np.ndarray  # (m,) per ground-truth box: IoU of its matched detection above the score threshold
    n_gt: int


def match(
    det_boxes: Any, det_scores: Any, gt_boxes: Any, iou_threshold: float = 0.5, score_threshold: float = 0.0
) -> ImageResult:
    """Greedy VOC matching; `best_iou` uses only detections with score >= score_threshold (0 when none)."""
    det = as_boxes(det_boxes)
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    gt = as_boxes(gt_boxes)
    order = np.argsort(-scores, kind="stable")
    det, scores = det[order], scores[order]
    iou = box_iou(det, gt)
    taken = np.zeros(len(gt), dtype=bool)
    tp = np.zeros(len(det), dtype=bool)
    best = np.zeros(len(gt))
    for i in range(len(det)):
        if len(gt) == 0:
            break
        cand = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            taken[j] = True
            tp[i] = True
            if scores[i] >= score_threshold:
                best[j] = iou[i, j]
    return ImageResult(scores=scores, tp=tp, best_iou=best, n_gt=len(gt))


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP (VOC 2010+) from pooled detections; NaN without ground truth."""
    if n_gt == 0:
        return math.nan
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, dtype=np.float64)[order]
    ctp = np.cumsum(hits)
    cfp = np.cumsum(1.0 - hits)
    recall = ctp / n_gt
    precision = ctp / (ctp + cfp)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _point_metrics(results: Sequence[ImageResult], score_threshold: float) -> dict[str, float]:
    tp = fp = n_gt = 0
    ious: list[np.ndarray] = []
    for r in results:
        keep = r.scores >= score_threshold
        tp += int(r.tp[keep].sum())
        fp += int((~r.tp[keep]).sum())
        n_gt += r.n_gt
        ious.append(r.best_iou)
    fn = n_gt - tp
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / n_gt if n_gt else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else math.nan
    all_iou = np.concatenate(ious) if ious else np.zeros(0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_iou": float(all_iou.mean()) if all_iou.size else math.nan,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def _map50(results: Sequence[ImageResult]) -> float:
    if not results:
        return math.nan
    scores = np.concatenate([r.scores for r in results])
    tp = np.concatenate([r.tp for r in results])
    return average_precision(scores, tp, sum(r.n_gt for r in results))


def detection_metrics(
    detections: Sequence[tuple[Any, Any]],
    ground_truth: Sequence[Any],
    *,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    n_boot: int = 0,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> dict[str, Any]:
    """precision, recall, F1, map50 and mean_iou (each with a 95% CI when n_boot > 0) over images.

    detections: per image (boxes (k, 4), scores (k,)); ground_truth: per image boxes (m, 4) (empty: no object).
    mean_iou: over ground-truth boxes, the IoU of the detection matched to it (score >= threshold), 0 when
    missed, so it measures localisation and recall together. CIs resample images (or patients with `groups`).
    """
    from sonokit.evaluate.bootstrap import bootstrap_cis
    from sonokit.evaluate.metrics import finite_or_none

    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection lists for {len(ground_truth)} images")
    results = [
        match(b, s, g, iou_threshold, score_threshold)
        for (b, s), g in zip(detections, ground_truth, strict=True)
    ]

    def compute(rs: Sequence[ImageResult]) -> dict[str, float]:
        out = _point_metrics(rs, score_threshold)
        out["map50"] = _map50(rs)
        return out

    point = compute(results)
    names = ("precision", "recall", "f1", "map50", "mean_iou")
    fns = {name: (lambda idx, name=name: compute([results[i] for i in idx])[name]) for name in names}
    cis = (
        bootstrap_cis(fns, np.arange(len(results)), n_boot=n_boot, seed=seed, groups=groups) if n_boot else {}
    )
    out: dict[str, Any] = {
        "kind": "detection",
        "n": len(results),
        "n_objects": int(sum(r.n_gt for r in results)),
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
    }
    if groups is not None:
        out["n_groups"] = len(np.unique(np.asarray(groups)))
    for name in names:
        out[name] = finite_or_none(point[name])
        ci = cis.get(name)
        out[f"{name}_ci95"] = [ci[0], ci[1]] if ci else None
    out.update(tp=point["tp"], fp=point["fp"], fn=point["fn"])
    if n_boot:
        unit = "patients" if groups is not None else "images"
        out["ci_method"] = f"percentile bootstrap, {n_boot} resamples of {unit}"
    return out
