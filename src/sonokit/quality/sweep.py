"""Robustness sweep: how a classifier's metric falls as a corruption grows, and where it crosses a level.

Why: the study asked "from what intensity does a corruption start to matter?" by sweeping a plane classifier's
accuracy against corruption intensity and against SSIM, and reading off where accuracy falls under 90%. This
module does that for any model given as `predict_fn(images) -> probs`, so it runs on a trained run, an ONNX
session or a stub in a test alike.

Thresholds, two ways (both reported by `find_thresholds`):
- absolute (`relative=False`): the metric falls below `level` itself (the study's "accuracy under 90%");
- relative (`relative=True`): the metric falls below `level` x the clean metric, for a model whose clean accuracy
  is already under the absolute level or for comparing models of different strength.
The crossing is linearly interpolated between the two grid intensities around it, and the SSIM at the crossing is
interpolated the same way from the mean SSIM at those intensities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonokit.augment.corruption import get_corruption, intensity_grid, ssim
from sonokit.errors import InputError
from sonokit.utils import get_logger, progress

log = get_logger(__name__)

PredictFn = Callable[[list[np.ndarray]], np.ndarray]
MetricFn = Callable[[np.ndarray, np.ndarray], float]

#: The study's three corruptions: the default of a sweep.
PAPER_CORRUPTIONS = ("scale_up", "median_blur", "gaussian_noise")


def accuracy_metric(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Top-1 accuracy from class probabilities (the study's metric)."""
    return float(np.mean(np.argmax(probs, axis=1) == y_true)) if len(y_true) else float("nan")


@dataclass
class SweepResult:
    """`curve`: one row per (corruption, intensity) with mean/std SSIM and the metric; `items`: one row per image
    and step (ssim, prediction, correctness), for binning by SSIM or per-image inspection."""

    curve: pd.DataFrame
    items: pd.DataFrame
    clean_metric: float


def _predict(predict_fn: PredictFn, images: list[np.ndarray], batch_size: int) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        probs = np.asarray(predict_fn(images[start : start + batch_size]), dtype=np.float64)
        if probs.ndim != 2 or probs.shape[0] != len(images[start : start + batch_size]):
            raise InputError(f"predict_fn must return (N, classes) probabilities, got shape {probs.shape}")
        out.append(probs)
    return np.concatenate(out, axis=0)


def robustness_sweep(
    images: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    predict_fn: PredictFn,
    corruptions: Sequence[str] = PAPER_CORRUPTIONS,
    steps: int = 10,
    seed: int = 0,
    ranges: dict[str, tuple[float, float]] | None = None,
    metric: MetricFn = accuracy_metric,
    batch_size: int = 32,
) -> SweepResult:
    """Corrupt every image at `steps` + 1 intensities from 0 to saturation (or `ranges[name]`) and score them.

    Each image keeps one random stream per corruption across intensities (seeded by seed, corruption and image
    index), so the noise field or shadow is the same at every intensity and the curve changes only with intensity.
    Intensity 0 is the clean image, predicted once and shared by every corruption.
    """
    if len(images) == 0:
        raise InputError("the sweep needs at least one image")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(images):
        raise InputError(f"{len(images)} images but {len(y)} labels")
    ranges = ranges or {}
    images = list(images)

    clean_probs = _predict(predict_fn, images, batch_size)
    clean_metric = metric(y, clean_probs)
    log.info("clean metric %.4f on %d images", clean_metric, len(images))

    curve_rows: list[dict] = []
    item_frames: list[pd.DataFrame] = []
    for ci, name in enumerate(corruptions):
        corruption = get_corruption(name)
        low, high = ranges.get(corruption.name, ranges.get(name, (0.0, corruption.intensity_range[1])))
        grid = intensity_grid(corruption.name, steps, low=low, high=high)
        for intensity in progress(grid, desc=corruption.name, unit="step"):
            if intensity == 0:
                probs, ssims = clean_probs, np.ones(len(images))
            else:
                # one batch of corrupted images in memory at a time: native frames are large
                ssims, parts = np.empty(len(images)), []
                for start in range(0, len(images), batch_size):
                    corrupted = []
                    for i in range(start, min(start + batch_size, len(images))):
                        out = corruption.apply(
                            images[i], float(intensity), np.random.default_rng([seed, ci, i])
                        )
                        ssims[i] = ssim(images[i], out)
                        corrupted.append(out)
                    parts.append(_predict(predict_fn, corrupted, batch_size))
                probs = np.concatenate(parts, axis=0)
            pred = np.argmax(probs, axis=1)
            value = metric(y, probs)
            curve_rows.append(
                {
                    "corruption": corruption.name,
                    "intensity": float(intensity),
                    "ssim_mean": float(ssims.mean()),
                    "ssim_std": float(ssims.std()),
                    "metric": value,
                    "n": len(images),
                }
            )
            item_frames.append(
                pd.DataFrame(
                    {
                        "corruption": corruption.name,
                        "intensity": float(intensity),
                        "index": np.arange(len(images)),
                        "ssim": ssims,
                        "y_true": y,
                        "y_pred": pred,
                        "correct": pred == y,
                    }
                )
            )
            log.debug("%s %.4g: ssim %.3f metric %.4f", corruption.name, intensity, ssims.mean(), value)
    return SweepResult(pd.DataFrame(curve_rows), pd.concat(item_frames, ignore_index=True), clean_metric)


def find_thresholds(
    curve: pd.DataFrame, level: float = 0.9, relative: bool = False, clean_metric: float | None = None
) -> pd.DataFrame:
    """Per corruption, the interpolated intensity and SSIM where the metric first falls below the target.

    target = `level` (absolute) or `level` x clean metric (relative; the clean metric is the intensity-0 row
    unless given). `crossed` is False, and the threshold NaN, when the metric never falls below the target in
    the swept range; a threshold of 0 means the clean metric is already below it.
    Columns also give the grid points either side of the crossing (`metric_before`, `metric_after`): the
    accuracy near the threshold.
    """
    rows = []
    for name, part in curve.groupby("corruption", sort=False):
        part = part.sort_values("intensity")
        x = part["intensity"].to_numpy(float)
        s = part["ssim_mean"].to_numpy(float)
        m = part["metric"].to_numpy(float)
        clean = float(m[0]) if clean_metric is None else float(clean_metric)
        target = level * clean if relative else level
        below = np.flatnonzero(m < target)
        row = {
            "corruption": name,
            "mode": "relative" if relative else "absolute",
            "level": level,
            "target": target,
            "clean_metric": clean,
            "crossed": bool(len(below)),
            "threshold_intensity": np.nan,
            "threshold_ssim": np.nan,
            "intensity_before": np.nan,
            "metric_before": np.nan,
            "intensity_after": np.nan,
            "metric_after": np.nan,
        }
        if len(below):
            k = int(below[0])
            if k == 0:
                row.update(
                    threshold_intensity=x[0], threshold_ssim=s[0], intensity_after=x[0], metric_after=m[0]
                )
            else:
                t = (m[k - 1] - target) / (m[k - 1] - m[k])
                row.update(
                    threshold_intensity=x[k - 1] + t * (x[k] - x[k - 1]),
                    threshold_ssim=s[k - 1] + t * (s[k] - s[k - 1]),
                    intensity_before=x[k - 1],
                    metric_before=m[k - 1],
                    intensity_after=x[k],
                    metric_after=m[k],
                )
        rows.append(row)
    return pd.DataFrame(rows)


def metric_by_ssim(
    items: pd.DataFrame, bins: Sequence[float] = (0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001)
) -> pd.DataFrame:
    """Accuracy per corruption in SSIM bins, from the per-image table (images of one step spread over SSIM)."""
    df = items.copy()
    df["ssim_bin"] = pd.cut(df["ssim"], bins=list(bins), right=False)
    out = (
        df.groupby(["corruption", "ssim_bin"], observed=True)
        .agg(accuracy=("correct", "mean"), n=("correct", "size"), ssim_mean=("ssim", "mean"))
        .reset_index()
    )
    out["ssim_bin"] = out["ssim_bin"].astype(str)
    return out


# ----------------------------------------------------------------------------------------- a trained run


def run_predict_fn(run: Any) -> PredictFn:
    """`predict_fn` for a loaded run (sonokit.core.run.load_run): softmax probabilities of images in memory,
    preprocessed as the run was trained (sonokit.predict.Predictor.arrays)."""
    from sonokit.predict import Predictor

    predictor = Predictor(run)
    return lambda images: predictor.arrays(images)["probs"]


def sweep_run(
    run_dir: str | Path,
    out_dir: str | Path,
    data: str | Path | None = None,
    corruptions: Sequence[str] = PAPER_CORRUPTIONS,
    steps: int = 10,
    level: float = 0.9,
    relative: bool = False,
    split: str = "test",
    max_images: int | None = None,
    seed: int = 0,
    device: str = "auto",
    max_intensity: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Sweep a trained classifier run on the `split` rows of `data` (default: its training data, its own split).

    Writes to `out_dir`: curve.csv (metric and SSIM per corruption and intensity), items.csv (per image and
    step), thresholds.csv (absolute and relative crossings, both), metric_by_ssim.csv, summary.json and the
    plots (the threshold marked in them is the `relative` one asked for). `max_intensity` replaces the top of
    a corruption's sweep (default: its saturation), for a finer grid where a model fails early. Returns the summary.
    """
    from sonokit.core.run import load_run, split_index
    from sonokit.data.frames import load_frame
    from sonokit.quality.plots import plot_sweep
    from sonokit.utils import atomic_write_json, write_csv

    if not 0 < level <= 1.5:
        raise InputError(f"--level must be a fraction such as 0.9, got {level}")
    names = [get_corruption(name).name for name in corruptions]
    ranges = {}
    for key, top in (max_intensity or {}).items():
        name = get_corruption(key).name
        if name not in names:
            raise InputError(f"--max-intensity names {key!r}, which is not among the swept corruptions")
        if not top > 0:
            raise InputError(f"--max-intensity {key}={top}: must be > 0")
        ranges[name] = (0.0, float(top))
    run = load_run(run_dir, device)
    task = run.task
    if not task.classes:
        raise InputError(f"the sweep needs a classifier run; {task.name!r} has no classes", run_dir)
    index, _ = split_index(run, data, resplit=True)
    rows = index if split == "all" else index[index["split"] == split]
    if "label" not in rows.columns:
        raise InputError(
            "the sweep needs labelled images (a label per image) to measure accuracy", task.cfg.data
        )
    rows = rows[rows["label"].astype(str).isin(task.classes)]
    if rows.empty:
        raise InputError(
            f"no labelled rows of the run's classes in split {split!r} (or use --split all)", task.cfg.data
        )
    if max_images is not None and len(rows) > max_images:
        rows = rows.sample(n=max_images, random_state=seed).sort_index()
    lookup = {c: i for i, c in enumerate(task.classes)}
    frames = rows["frame"] if "frame" in rows.columns else pd.Series(0, index=rows.index)
    images = [
        np.asarray(load_frame(p, int(f) if f == f else 0)) for p, f in zip(rows["path"], frames, strict=True)
    ]
    labels = rows["label"].astype(str).map(lookup).to_numpy(dtype=np.int64)
    log.info("sweeping %s on %d %s images: %s", run.name, len(images), split, ", ".join(corruptions))

    result = robustness_sweep(images, labels, run_predict_fn(run), names, steps, seed, ranges)
    absolute = find_thresholds(result.curve, level, relative=False)
    rel = find_thresholds(result.curve, level, relative=True)
    out_dir = Path(out_dir)
    write_csv(result.curve, out_dir / "curve.csv")
    write_csv(result.items.assign(path=rows["path"].to_numpy()[result.items["index"]]), out_dir / "items.csv")
    write_csv(pd.concat([absolute, rel], ignore_index=True), out_dir / "thresholds.csv")
    write_csv(metric_by_ssim(result.items), out_dir / "metric_by_ssim.csv")
    plots = plot_sweep(result.curve, out_dir / "plots", rel if relative else absolute)
    summary = {
        "run": str(run.run_dir),
        "model": run.name,
        "split": split,
        "n_images": len(images),
        "steps": steps,
        "ranges": {n: list(ranges.get(n, (0.0, get_corruption(n).intensity_range[1]))) for n in names},
        "seed": seed,
        "clean_accuracy": result.clean_metric,
        "level": level,
        "thresholds": {
            mode: {
                r["corruption"]: {
                    "intensity": r["threshold_intensity"] if r["crossed"] else None,
                    "ssim": r["threshold_ssim"] if r["crossed"] else None,
                    "accuracy_before": None if pd.isna(r["metric_before"]) else r["metric_before"],
                    "accuracy_after": None if pd.isna(r["metric_after"]) else r["metric_after"],
                }
                for r in table.to_dict("records")
            }
            for mode, table in (("absolute", absolute), ("relative", rel))
        },
        "plots": [str(p) for p in plots],
    }
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
