"""Evaluation plots as PNG files (matplotlib's object API on the Agg canvas: no pyplot global state, no display).

Every function writes atomically and returns the path, so a killed evaluation never leaves a truncated PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sonokit.utils.atomic import atomic_path

_DPI = 110


def _figure(width: float = 5.0, height: float = 4.2):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_confusion(
    cm: np.ndarray | Sequence, classes: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Confusion matrix: colour is the row-normalised rate (recall), text is the count."""
    cm = np.asarray(cm)
    k = len(classes)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure(2.6 + 0.75 * k, 1.8 + 0.7 * k)
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j, i, str(cm[i, j]), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black"
            )
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046, label="row rate")
    return _save(fig, path)


def plot_roc(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """One-vs-rest ROC curve per class that has both positives and negatives."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y_true = np.asarray(y_true)
    fig = _figure()
    ax = fig.add_subplot()
    for c, name in enumerate(classes):
        positive = y_true == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(positive, probs[:, c]):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title or "ROC (one-vs-rest)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_reliability(
    probs: np.ndarray, y_true: np.ndarray, path: str | Path, n_bins: int = 15, title: str = ""
) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with the ECE in the title."""
    from sonokit.evaluate.metrics import expected_calibration_error, reliability_bins

    bins = reliability_bins(probs, y_true, n_bins)
    centers = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    filled = bins["count"] > 0
    fig = _figure()
    ax = fig.add_subplot()
    ax.bar(
        centers[filled],
        bins["accuracy"][filled],
        width=1.0 / n_bins,
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    ax.plot(bins["confidence"][filled], bins["accuracy"][filled], "o", color="C3", ms=3, label="bin mean")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ece = expected_calibration_error(probs, y_true, n_bins)
    ax.set_title(title or f"reliability (ECE {ece:.3f})")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_pred_vs_true(
    y_true: np.ndarray, y_pred: np.ndarray, path: str | Path, label: str = "value", title: str = ""
) -> Path:
    """Scatter of prediction against truth with the identity line."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    lo = float(min(y_true.min(), y_pred.min())) if len(y_true) else 0.0
    hi = float(max(y_true.max(), y_pred.max())) if len(y_true) else 1.0
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(y_true, y_pred, s=10, alpha=0.6)
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=0.8)
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_title(title or f"predicted vs true {label}")
    return _save(fig, path)


def plot_bland_altman(
    y_true: np.ndarray, y_pred: np.ndarray, path: str | Path, label: str = "value", title: str = ""
) -> Path:
    """Bland-Altman: difference (pred - true) against the mean, with bias and 95% limits of agreement."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    mean = (y_true + y_pred) / 2
    diff = y_pred - y_true
    bias = float(np.mean(diff)) if len(diff) else 0.0
    sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(mean, diff, s=10, alpha=0.6)
    ax.axhline(bias, color="C3", label=f"bias {bias:.2f}")
    for sign in (-1, 1):
        ax.axhline(bias + sign * 1.96 * sd, color="C3", ls="--", lw=0.8)
    ax.set_xlabel(f"mean of predicted and true {label}")
    ax.set_ylabel(f"predicted - true {label}")
    ax.set_title(title or f"Bland-Altman (LoA {bias - 1.96 * sd:.2f} to {bias + 1.96 * sd:.2f})")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_training_curves(log_csv: str | Path, path: str | Path, metric_name: str = "metric") -> Path:
    """Loss and validation metric per epoch from a run's log.csv (epoch, phase, loss, metric, seconds)."""
    import pandas as pd

    log = pd.read_csv(log_csv)
    fig = _figure(8.0, 3.4)
    ax_loss, ax_metric = fig.subplots(1, 2)
    for phase, rows in log.groupby("phase", sort=False):
        ax_loss.plot(rows["epoch"], rows["loss"], marker="o", ms=3, label=phase)
        ax_metric.plot(rows["epoch"], rows["metric"], marker="o", ms=3, label=phase)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=7)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(metric_name)
    ax_metric.legend(fontsize=7)
    fig.suptitle("training curves")
    return _save(fig, path)


def plot_overlay(image_rgb: np.ndarray, path: str | Path, title: str = "") -> Path:
    """An RGB picture (e.g. a Grad-CAM overlay) with a caption, no axes."""
    h, w = image_rgb.shape[:2]
    fig = _figure(4.0, 4.0 * h / w + 0.4)
    ax = fig.add_subplot()
    ax.imshow(image_rgb)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    return _save(fig, path)
