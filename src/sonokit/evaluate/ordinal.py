"""Ordinal metrics for scores such as the lung-ultrasound score 0-3: the class index is the score.

Accuracy treats a 0 called 3 like a 2 called 3; clinically the first is far worse. Quadratic-weighted kappa and
the mean absolute error in score points weigh errors by distance, and a patient's score is the sum over their
zones (clips), as in clinical LUS scores, so the patient level compares summed scores.
Point metrics are numpy (quadratic_kappa equals sklearn's cohen_kappa_score(weights="quadratic",
labels=range(K))) so the bootstrap stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from sonokit.evaluate.metrics import _with_cis, confusion, mae, pearson_r


def quadratic_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Cohen's kappa with quadratic weights (i - j)^2 over the K score levels; NaN when chance agreement is total."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return math.nan
    observed = confusion(y_true, y_pred, num_classes).astype(float)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    levels = np.arange(num_classes)
    weights = (levels[:, None] - levels[None, :]) ** 2
    denom = float(np.sum(weights * expected))
    if denom == 0.0:
        return math.nan
    return 1.0 - float(np.sum(weights * observed)) / denom


def spearman_r(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson r of average ranks); NaN when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return math.nan
    return pearson_r(rankdata(x), rankdata(y))


def ordinal_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    num_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> dict[str, Any]:
    """qwk (quadratic-weighted kappa) and score_mae (mean |predicted - true| in score points), each with a CI.

    With the same seed and groups as classification_metrics the bootstrap draws the same resamples.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} and {y_pred.shape}"
        )
    fns = {
        "qwk": lambda t, p: quadratic_kappa(t, p, num_classes),
        "score_mae": lambda t, p: mae(t.astype(float), p.astype(float)),
    }
    point = {name: fn(y_true, y_pred) for name, fn in fns.items()}
    return _with_cis(point, fns, (y_true, y_pred), n_boot, seed, groups)


def patient_sums(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, groups: Sequence | np.ndarray
) -> pd.DataFrame:
    """One row per patient: group, clips (zones scored), true_sum and pred_sum of the clip scores."""
    df = pd.DataFrame(
        {
            "group": np.asarray(groups).astype(str),
            "true": np.asarray(y_true, dtype=np.int64),
            "pred": np.asarray(y_pred, dtype=np.int64),
        }
    )
    out = df.groupby("group", sort=True).agg(
        clips=("true", "size"), true_sum=("true", "sum"), pred_sum=("pred", "sum")
    )
    return out.reset_index()


def patient_sum_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    groups: Sequence | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per patient, the sum of the clip scores: patient_sum_mae (points) and patient_sum_spearman, with CIs.

    Each patient is one row here, so the bootstrap resamples patients.
    """
    sums = patient_sums(y_true, y_pred, groups)
    t = sums["true_sum"].to_numpy(float)
    p = sums["pred_sum"].to_numpy(float)
    fns = {"patient_sum_mae": mae, "patient_sum_spearman": spearman_r}
    point = {name: fn(t, p) for name, fn in fns.items()}
    n_clips, n_patients = int(sums["clips"].sum()), len(sums)
    level = f"sum of the clip scores of each patient ({n_clips} clips, {n_patients} patients)"
    if n_patients > 0 and bool((sums["clips"] == 1).all()):
        level += "; every patient has one clip, so the sum is the clip score: is there a patient column?"
    out: dict[str, Any] = {"n_patients": n_patients, "patient_level": level}
    out.update(_with_cis(point, fns, (t, p), n_boot, seed, None))
    return out
