"""Echo-specific evaluation: EF agreement under several protocols, heart-function classes, Dice, tracing error,
ED/ES detection, and the LV area curve plot.

Generic regression metrics (MAE, RMSE, R2, Pearson r with bootstrap CIs, Bland-Altman) come from
sonokit.evaluate.metrics; this module adds what only an echo reader asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.evaluate.bootstrap import bootstrap_cis
from sonokit.evaluate.metrics import confusion, finite_or_none, regression_metrics


def prefixed(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Scalar metrics with CIs (and bias / limits of agreement) renamed `<prefix><name>`, for a flat JSON."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if f"{key}_ci95" in metrics or key in ("bias", "loa95", "n"):
            out[f"{prefix}{key}"] = value
            if f"{key}_ci95" in metrics:
                out[f"{prefix}{key}_ci95"] = metrics[f"{key}_ci95"]
    return out


def ef_metrics(
    y_true: Sequence[float] | np.ndarray,
    y_pred: Sequence[float] | np.ndarray,
    n_boot: int,
    seed: int,
    groups: Sequence | np.ndarray | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Regression metrics of EF pairs with finite values only (a failed measurement is counted, not scored)."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    ok = np.isfinite(t) & np.isfinite(p)
    g = None if groups is None else np.asarray(groups)[ok]
    m = regression_metrics(t[ok], p[ok], n_boot, seed, g)
    out = m if not prefix else prefixed(m, prefix)
    out[f"{prefix}n_failed"] = int((~ok & np.isfinite(t)).sum())
    return out


def baseline_metrics(
    y_true: np.ndarray, train_mean: float | None, n_boot: int, seed: int, groups=None
) -> dict:
    """The mean predictor: every study gets the training set's mean EF. A model must beat this by a margin."""
    t = np.asarray(y_true, dtype=float)
    t = t[np.isfinite(t)]
    if train_mean is None or not np.isfinite(train_mean) or len(t) == 0:
        return {
            "baseline_mae": None,
            "baseline_mae_ci95": None,
            "baseline_mean": finite_or_none(train_mean or np.nan),
        }
    m = regression_metrics(
        t, np.full(len(t), float(train_mean)), n_boot, seed, None if groups is None else groups
    )
    return {"baseline_mae": m["mae"], "baseline_mae_ci95": m["mae_ci95"], "baseline_mean": float(train_mean)}


def class_agreement(
    y_true: Sequence[float], y_pred: Sequence[float], thresholds: str = "default"
) -> dict[str, Any]:
    """Heart-function classes of true and predicted EF: confusion matrix, per-class sensitivity/specificity."""
    from sonokit.clinical import get_thresholds

    preset = get_thresholds(thresholds)
    labels = list(preset.labels)
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    ok = np.isfinite(t) & np.isfinite(p)
    ti = np.array([labels.index(preset.classify(v)) for v in t[ok]], dtype=np.int64)
    pi = np.array([labels.index(preset.classify(v)) for v in p[ok]], dtype=np.int64)
    cm = confusion(ti, pi, len(labels))
    sens, spec = {}, {}
    total = cm.sum()
    for i, label in enumerate(labels):
        pos = cm[i].sum()
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        neg = total - pos
        sens[label] = float(tp / pos) if pos else None
        spec[label] = float((neg - fp) / neg) if neg else None
    return {
        "thresholds": preset.name,
        "labels": labels,
        "confusion_matrix": cm.tolist(),
        "sensitivity": sens,
        "specificity": spec,
        "accuracy": float(np.trace(cm) / total) if total else None,
        "n": int(total),
    }


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(true, bool)
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(p, t).sum() / denom)


def mean_with_ci(values: np.ndarray, n_boot: int, seed: int, groups=None) -> tuple[float | None, list | None]:
    """Mean of finite values with a percentile bootstrap CI (patients resampled when groups are given)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    v = v[ok]
    if len(v) == 0:
        return None, None
    g = None if groups is None else np.asarray(groups)[ok]
    ci = bootstrap_cis({"m": np.mean}, v, n_boot=n_boot, seed=seed, groups=g)["m"]
    return float(np.mean(v)), (list(ci) if ci is not None else None)


def nearest_error(detected: Sequence[int], truth: int) -> float:
    """Frames between a true ED (or ES) frame and the nearest detected one (NaN when none was detected)."""
    d = np.asarray(list(detected), dtype=float)
    return float(np.min(np.abs(d - truth))) if len(d) and truth >= 0 else float("nan")


# ---------------------------------------------------------------------------------------------- plots


def plot_ef_agreement(
    y_true: Sequence[float],
    y_pred: Sequence[float],
    plot_dir: Path,
    split: str,
    title: str,
    heart_function: dict[str, Any] | None = None,
) -> list[Path]:
    """The headline EF plots of a split: predicted vs true, and with the heart-function agreement (the full
    look, for held-out data) also Bland-Altman and the class confusion matrix."""
    from sonokit.evaluate.plots import plot_bland_altman, plot_confusion, plot_pred_vs_true

    out = [plot_pred_vs_true(y_true, y_pred, plot_dir / f"ef_pred_vs_true_{split}.png", "EF (%)", title)]
    if heart_function is not None:
        hf = heart_function
        out += [
            plot_bland_altman(y_true, y_pred, plot_dir / f"ef_bland_altman_{split}.png", "EF (%)"),
            plot_confusion(
                hf["confusion_matrix"],
                hf["labels"],
                plot_dir / f"ef_classes_{split}.png",
                f"{split}: heart function ({hf['thresholds']})",
            ),
        ]
    return out


def plot_area_curve(
    area: np.ndarray,
    ed: Sequence[int],
    es: Sequence[int],
    path: str | Path,
    fps: float | None = None,
    true_ed: int | None = None,
    true_es: int | None = None,
    title: str = "",
    ylabel: str = "LV area (pixels)",
) -> Path:
    """LV size over time with the detected ED (peaks) and ES (troughs), and the expert's frames when known."""
    from matplotlib.figure import Figure

    from sonokit.utils import atomic_path

    area = np.asarray(area, dtype=float)
    x = np.arange(len(area)) / fps if fps else np.arange(len(area))
    fig = Figure(figsize=(6.0, 3.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, area, color="C0", lw=1.2)
    ax.scatter(x[list(ed)], area[list(ed)], color="C3", zorder=3, label="ED (detected)")
    ax.scatter(x[list(es)], area[list(es)], color="C2", zorder=3, label="ES (detected)")
    for frame, color, name in ((true_ed, "C3", "ED (expert)"), (true_es, "C2", "ES (expert)")):
        if frame is not None and 0 <= frame < len(area):
            ax.axvline(x[frame], color=color, ls="--", lw=0.8, label=name)
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "LV area over the cine")
    ax.legend(fontsize=7)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
