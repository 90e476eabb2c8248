"""Binary calcification metrics with patient-bootstrap CIs: the same numbers for the CNN, the cascade and the
heuristic baseline, so the rows of one table are comparable.

F1, precision and recall are those of the calcified (positive) class, as the paper reports them; macro-F1 and
accuracy are given too because a classifier that calls every valve calcified has a high positive-class F1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

BINARY_KEYS = ("f1", "precision", "recall", "specificity", "accuracy", "macro_f1")


def _counts(t: np.ndarray, p: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    tn = int(np.sum(~t & ~p))
    return tp, fp, fn, tn


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def binary_point(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Point values of BINARY_KEYS for boolean arrays (True = calcified)."""
    t, p = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp, fp, fn, tn = _counts(t, p)
    f1_pos = _ratio(2 * tp, 2 * tp + fp + fn)
    f1_neg = _ratio(2 * tn, 2 * tn + fn + fp)
    return {
        "f1": f1_pos,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, len(t)),
        "macro_f1": float(np.nanmean([f1_pos, f1_neg])) if np.isfinite([f1_pos, f1_neg]).any() else math.nan,
    }


def binary_metrics(
    y_true: Sequence[bool] | np.ndarray,
    y_pred: Sequence[bool] | np.ndarray,
    prob: Sequence[float] | np.ndarray | None = None,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """BINARY_KEYS (and AUROC when probabilities are given) with 95% percentile-bootstrap CIs."""
    from sonokit.evaluate.bootstrap import bootstrap_cis
    from sonokit.evaluate.metrics import auroc_ovr, finite_or_none

    t = np.asarray(y_true, bool)
    p = np.asarray(y_pred, bool)
    idx = np.arange(len(t))
    fns = {k: (lambda i, k=k: binary_point(t[i], p[i])[k]) for k in BINARY_KEYS}
    if prob is not None:
        score = np.asarray(prob, float)
        two = np.stack([1.0 - score, score], axis=1)
        fns["auroc"] = lambda i: auroc_ovr(t[i].astype(np.int64), two[i])
    point = {k: fn(idx) for k, fn in fns.items()}
    cis = bootstrap_cis(fns, idx, n_boot=n_boot, seed=seed, groups=groups) if n_boot and len(t) else {}
    tp, fp, fn, tn = _counts(t, p)
    out: dict[str, Any] = {
        "n": int(len(t)),
        "n_positive": int(t.sum()),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
    if groups is not None:
        out["n_groups"] = int(len(np.unique(np.asarray(groups))))
    for k, v in point.items():
        out[k] = finite_or_none(v)
        ci = cis.get(k)
        out[f"{k}_ci95"] = [ci[0], ci[1]] if ci else None
    return out
