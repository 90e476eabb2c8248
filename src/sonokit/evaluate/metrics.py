"""Metrics for classification and regression, each scalar with a bootstrap 95% CI.

Point metrics are small numpy functions (tested against scikit-learn) so that 1000 bootstrap resamples of a few
thousand items take about a second; calling sklearn inside the bootstrap loop would be ~50x slower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from sonokit.evaluate.bootstrap import bootstrap_cis

# ---------------------------------------------------------------- classification point metrics


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts; rows are the true class, columns the predicted class (sklearn's convention)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else math.nan


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int = 2) -> float:
    """Fraction of items whose true class is among the k most probable."""
    if len(y_true) == 0:
        return math.nan
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def _prf_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    actual = cm.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        denom = predicted + actual
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return precision, recall, f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Mean F1 over the classes that occur in y_true or y_pred (scikit-learn's default label set)."""
    if len(y_true) == 0:
        return math.nan
    k = num_classes or int(max(np.max(y_true), np.max(y_pred))) + 1
    cm = confusion(y_true, y_pred, k)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    return float(np.mean(_prf_from_confusion(cm)[2][present]))


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)  # average ranks for ties, as in the Mann-Whitney U statistic
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_ovr(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes that have both positives and negatives (NaN if none)."""
    y_true = np.asarray(y_true)
    aucs = [_binary_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])]
    aucs = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(aucs)) if aucs else math.nan


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): |accuracy - confidence| per equal-width confidence bin, weighted by bin size."""
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return math.nan
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    # bins are (lo, hi]; confidence 0 falls into the first bin
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    return float(np.sum(np.abs(acc_sum - conf_sum)) / len(y_true))


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin mean confidence, accuracy and count: the data behind a reliability diagram."""
    probs = np.asarray(probs, dtype=float)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return {"edges": np.linspace(0, 1, n_bins + 1), "confidence": conf, "accuracy": acc, "count": count}


# ---------------------------------------------------------------- regression point metrics


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y_pred - y_true))) if len(y_true) else math.nan


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_pred - y_true) ** 2))) if len(y_true) else math.nan


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination; NaN when y_true is constant (undefined, where sklearn returns 0 or 1)."""
    ss_tot = float(np.sum((y_true - np.mean(y_true)) ** 2)) if len(y_true) else 0.0
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(np.sum((y_true - y_pred) ** 2)) / ss_tot


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if len(y_true) < 2 or np.std(y_true) == 0 or np.std(y_pred) == 0:
        return math.nan
    return float(np.corrcoef(y_true, y_pred)[0, 1])


# ---------------------------------------------------------------- bundles written to metrics_<split>.json


def _with_cis(
    point: dict[str, float],
    fns: dict[str, Any],
    arrays: tuple[np.ndarray, ...],
    n_boot: int,
    seed: int,
    groups: Sequence | np.ndarray | None,
) -> dict[str, Any]:
    cis = bootstrap_cis(fns, *arrays, n_boot=n_boot, seed=seed, groups=groups)
    out: dict[str, Any] = {}
    for name, value in point.items():
        out[name] = finite_or_none(value)
        ci = cis.get(name)
        out[f"{name}_ci95"] = [ci[0], ci[1]] if ci is not None else None
    return out


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, top-2 accuracy, macro OvR AUROC and ECE with 95% CIs; per-class table; confusion.

    `groups` (patient ids, one per item) makes the bootstrap resample patients instead of items.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=float)
    k = len(classes)
    if probs.ndim != 2 or probs.shape != (len(y_true), k):
        raise ValueError(f"probs must have shape ({len(y_true)}, {k}), got {probs.shape}")
    y_pred = probs.argmax(axis=1) if len(y_true) else np.zeros(0, dtype=np.int64)

    def _acc(t: np.ndarray, p: np.ndarray) -> float:
        return accuracy(t, p.argmax(axis=1))

    def _f1(t: np.ndarray, p: np.ndarray) -> float:
        return macro_f1(t, p.argmax(axis=1), k)

    fns = {
        "accuracy": _acc,
        "macro_f1": _f1,
        "top2_accuracy": lambda t, p: top_k_accuracy(t, p, 2),
        "auroc": auroc_ovr,
        "ece": lambda t, p: expected_calibration_error(p, t),
    }
    point = {name: fn(y_true, probs) for name, fn in fns.items()}
    out: dict[str, Any] = {"kind": "classification", "n": len(y_true), "classes": list(classes)}
    if groups is not None:
        out["n_groups"] = len(np.unique(np.asarray(groups)))
    out["ci_method"] = (
        f"percentile bootstrap, {n_boot} resamples of {'patients' if groups is not None else 'items'}"
    )
    out.update(_with_cis(point, fns, (y_true, probs), n_boot, seed, groups))
    cm = confusion(y_true, y_pred, k)
    precision, recall, f1 = _prf_from_confusion(cm)
    out["per_class"] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(cm[i].sum()),
        }
        for i, name in enumerate(classes)
    }
    out["confusion_matrix"] = cm.tolist()
    return out


def regression_metrics(
    y_true: Sequence[float] | np.ndarray,
    y_pred: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> dict[str, Any]:
    """MAE, RMSE, R2, Pearson r with 95% CIs, plus Bland-Altman bias and 95% limits of agreement."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} and {y_pred.shape}"
        )
    fns = {"mae": mae, "rmse": rmse, "r2": r2, "pearson_r": pearson_r}
    point = {name: fn(y_true, y_pred) for name, fn in fns.items()}
    out: dict[str, Any] = {"kind": "regression", "n": len(y_true)}
    if groups is not None:
        out["n_groups"] = len(np.unique(np.asarray(groups)))
    out["ci_method"] = (
        f"percentile bootstrap, {n_boot} resamples of {'patients' if groups is not None else 'items'}"
    )
    out.update(_with_cis(point, fns, (y_true, y_pred), n_boot, seed, groups))
    diff = y_pred - y_true
    bias = float(np.mean(diff)) if len(diff) else math.nan
    sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else math.nan
    out["bias"] = finite_or_none(bias)
    out["loa95"] = [finite_or_none(bias - 1.96 * sd), finite_or_none(bias + 1.96 * sd)]
    return out


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: undefined metrics are written as null."""
    value = float(value)
    return value if math.isfinite(value) else None


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The scalar entries of a metrics dict that have a CI (what cross-validation averages and reports show)."""
    return {k: v for k, v in metrics.items() if f"{k}_ci95" in metrics and not isinstance(v, (list, dict))}


_LOG_EPS = 1e-12


def probs_to_logits(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities, clipped away from log(0); usable wherever logits are expected (softmax-equivalent)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _LOG_EPS, 1.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
