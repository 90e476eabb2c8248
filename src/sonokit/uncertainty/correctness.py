"""Predict whether a classifier's own prediction is right, from its softmax vector alone.

This follows the published lung-ultrasound work (a small network or an SVC, also one SVC per predicted class,
fed the softmax vector) and adds the features that carry the signal explicitly: the softmax sorted in
decreasing order (class-agnostic), its entropy and the top-1 minus top-2 margin. The maximum softmax
probability itself ("msp") is kept as a no-training baseline: a learned predictor is only worth its keep if it
beats it, and on softmax features alone it often does not.
"""

from __future__ import annotations

import warnings

import numpy as np

from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

KINDS = ("msp", "mlp", "svc", "svc-per-class")


def correctness_features(probs: np.ndarray) -> np.ndarray:
    """(N, K + 2): softmax sorted high to low, normalised entropy, and top-1 minus top-2 margin."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"expected (N, K>=2) probabilities, got shape {p.shape}")
    s = -np.sort(-p, axis=1)
    entropy = -np.sum(p * np.log(p), axis=1) / np.log(p.shape[1])
    margin = s[:, 0] - s[:, 1]
    return np.column_stack([s, entropy, margin])


def _make_estimator(kind: str, seed: int):  # noqa: ANN202 - sklearn estimators have no common static type
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(32, 16), alpha=1e-2, max_iter=600, random_state=seed)
    else:
        clf = SVC(kernel="rbf", C=1.0, probability=True, class_weight="balanced", random_state=seed)
    return make_pipeline(StandardScaler(), clf)


class _Constant:
    """Stands in when a training subset holds one outcome only (e.g. a class the model never gets wrong)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.full(len(x), 1 - self.rate), np.full(len(x), self.rate)])


def _fit_one(kind: str, x: np.ndarray, ok: np.ndarray, seed: int, min_per_outcome: int = 3):  # noqa: ANN202
    n_err, n_ok = int(np.sum(~ok)), int(np.sum(ok))
    if min(n_err, n_ok) < min_per_outcome:
        return _Constant(float(ok.mean()) if ok.size else 1.0)
    est = _make_estimator(kind, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP convergence chatter on tiny sets
        est.fit(x, ok.astype(np.int64))
    return est


def _p_correct(est, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    return est.predict_proba(x)[:, 1]


class CorrectnessPredictor:
    """P(prediction is correct) from the softmax vector; kind is "msp", "mlp", "svc" or "svc-per-class"."""

    def __init__(self, kind: str = "mlp", seed: int = 0) -> None:
        if kind not in KINDS:
            raise InputError(f"correctness predictor kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.seed = seed
        self._global = None
        self._per_class: dict[int, object] = {}
        self.n_classes: int | None = None

    def fit(self, probs: np.ndarray, correct: np.ndarray) -> CorrectnessPredictor:
        probs = np.asarray(probs, dtype=np.float64)
        ok = np.asarray(correct).astype(bool).ravel()
        if probs.shape[0] != ok.size:
            raise InputError(f"{probs.shape[0]} probability rows but {ok.size} correctness labels")
        self.n_classes = probs.shape[1]
        if self.kind == "msp":
            return self
        x = correctness_features(probs)
        base_kind = "svc" if self.kind == "svc-per-class" else self.kind
        self._global = _fit_one(base_kind, x, ok, self.seed)
        if self.kind == "svc-per-class":
            pred = probs.argmax(axis=1)
            for c in np.unique(pred):
                m = pred == c
                # classes with too few errors (or too few items) fall back to the global SVC
                if min(int(np.sum(~ok[m])), int(np.sum(ok[m]))) >= 5:
                    self._per_class[int(c)] = _fit_one("svc", x[m], ok[m], self.seed)
        return self

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:
        """(N,) probability that the classifier's argmax prediction is correct."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.kind == "msp":
            return probs.max(axis=1)
        if self._global is None:
            raise InputError("correctness predictor used before fit()")
        x = correctness_features(probs)
        out = _p_correct(self._global, x)
        if self._per_class:
            pred = probs.argmax(axis=1)
            for c, est in self._per_class.items():
                m = pred == c
                if m.any():
                    out[m] = _p_correct(est, x[m])
        return out

    def evaluate(self, probs: np.ndarray, correct: np.ndarray) -> dict[str, float]:
        """AUROC for detecting errors (errors are the positive class) and the Brier score of P(correct)."""
        ok = np.asarray(correct).astype(bool).ravel()
        p = self.predict_proba(probs)
        return {"auroc": error_auroc(p, ok), "brier": float(np.mean((p - ok) ** 2))}


def error_auroc(p_correct: np.ndarray, correct: np.ndarray) -> float:
    """AUROC of 1 - P(correct) for flagging errors; NaN when the set holds only one outcome."""
    from sklearn.metrics import roc_auc_score

    ok = np.asarray(correct).astype(bool).ravel()
    if ok.all() or not ok.any():
        return float("nan")
    return float(roc_auc_score(~ok, 1.0 - np.asarray(p_correct, dtype=np.float64).ravel()))


def cross_fit_predict(
    kind: str, probs: np.ndarray, correct: np.ndarray, n_splits: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold P(correct) on the fitting set itself, so thresholds chosen on it are not over-optimistic."""
    from sklearn.model_selection import StratifiedKFold

    probs = np.asarray(probs, dtype=np.float64)
    ok = np.asarray(correct).astype(bool).ravel()
    if kind == "msp":
        return probs.max(axis=1)
    minority = int(min(ok.sum(), (~ok).sum()))
    splits = min(n_splits, minority)
    if splits < 2:
        return np.full(ok.size, float(ok.mean()))
    out = np.empty(ok.size)
    folds = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    for train, held in folds.split(probs, ok):
        out[held] = CorrectnessPredictor(kind, seed).fit(probs[train], ok[train]).predict_proba(probs[held])
    return out
