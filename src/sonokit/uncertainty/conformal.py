"""Split-conformal prediction: sets for classification, intervals for regression.

With calibration scores s_1..s_n exchangeable with the test score, the ceil((n+1)(1-alpha))/n empirical
quantile gives P(y in set) >= 1 - alpha on average over calibration draws, whatever the model. LAC (least
ambiguous set-valued classifier, Sadinle et al. 2019) gives the smallest sets; APS (adaptive prediction sets,
Romano et al. 2020) gives sets that grow on hard inputs, with closer to per-input (conditional) coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sonokit.errors import InputError

METHODS = ("lac", "aps")


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The finite-sample conformal quantile: the ceil((n+1)(1-alpha))-th smallest score (inf if n is too small)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = scores.size
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if n == 0:
        raise InputError("no calibration scores")
    rank = int(np.ceil((n + 1) * (1.0 - alpha)))
    if rank > n:  # too few calibration points for this alpha: the only valid set is everything
        return float("inf")
    return float(scores[rank - 1])


def _aps_scores(probs: np.ndarray, labels: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """APS score of label `labels[i]` for each row: probability mass of classes ranked at or above it.

    With u ~ U(0,1) the label's own mass is counted by a fraction u (randomised APS), which makes coverage
    exact rather than conservative.
    """
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=1)
    cum = np.cumsum(sorted_p, axis=1)
    rank = np.argsort(order, axis=1)  # rank[i, k] = position of class k in row i's order
    pos = rank[np.arange(len(labels)), labels]
    through = cum[np.arange(len(labels)), pos]
    own = sorted_p[np.arange(len(labels)), pos]
    return through - own * (1.0 - u) if u is not None else through


@dataclass
class ConformalClassifier:
    """A calibrated set predictor: `predict_sets(probs)` gives a boolean (N, K) membership matrix."""

    qhat: float
    alpha: float
    method: str = "lac"
    randomized: bool = True
    seed: int = 0
    n_cal: int = 0

    def scores_all(self, probs: np.ndarray) -> np.ndarray:
        """Nonconformity score of every class for every row, (N, K)."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.method == "lac":
            return 1.0 - probs
        # a fresh stream per call: the same input always gives the same sets
        u = np.random.default_rng(self.seed).uniform(size=(probs.shape[0], 1)) if self.randomized else None
        order = np.argsort(-probs, axis=1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=1)
        through = np.cumsum(sorted_p, axis=1)
        s_sorted = through - sorted_p * (1.0 - u) if u is not None else through
        out = np.empty_like(s_sorted)
        np.put_along_axis(out, order, s_sorted, axis=1)
        return out

    def predict_sets(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2:
            raise InputError(f"expected a (N, K) probability array, got shape {probs.shape}")
        return self.scores_all(probs) <= self.qhat

    def to_dict(self) -> dict[str, float | str | int | bool]:
        return {
            "method": self.method,
            "alpha": self.alpha,
            "qhat": self.qhat,
            "n_cal": self.n_cal,
            "randomized": self.randomized,
        }


def conformal_classification(
    probs_cal: np.ndarray,
    y_cal: np.ndarray,
    alpha: float,
    method: str = "lac",
    randomized: bool = True,
    seed: int = 0,
) -> ConformalClassifier:
    """Calibrate a set predictor on held-out probabilities (never the training set)."""
    probs = np.asarray(probs_cal, dtype=np.float64)
    y = np.asarray(y_cal).astype(np.int64).ravel()
    if probs.ndim != 2 or probs.shape[0] != y.size:
        raise InputError(f"probabilities {probs.shape} and labels {y.shape} do not match")
    if method not in METHODS:
        raise InputError(f"conformal method must be one of {METHODS}, got {method!r}")
    if method == "lac":
        scores = 1.0 - probs[np.arange(y.size), y]
    else:
        rng = np.random.default_rng(seed + 1)  # a stream distinct from the one used at prediction time
        u = rng.uniform(size=y.size) if randomized else None
        scores = _aps_scores(probs, y, u)
    return ConformalClassifier(
        qhat=conformal_quantile(scores, alpha),
        alpha=float(alpha),
        method=method,
        randomized=randomized,
        seed=seed,
        n_cal=int(y.size),
    )


def conformal_regression(
    pred_cal: np.ndarray, y_cal: np.ndarray, alpha: float, sigma_cal: np.ndarray | None = None
) -> float:
    """Half-width of a split-conformal interval pred +- q.

    Without `sigma_cal` the score is |y - pred| and q is in the units of y. With a per-item spread estimate
    (normalised conformal) the score is |y - pred| / sigma and the interval is pred +- q * sigma.
    """
    pred = np.asarray(pred_cal, dtype=np.float64).ravel()
    y = np.asarray(y_cal, dtype=np.float64).ravel()
    if pred.shape != y.shape:
        raise InputError(f"{pred.size} predictions but {y.size} targets")
    resid = np.abs(y - pred)
    if sigma_cal is not None:
        sigma = np.asarray(sigma_cal, dtype=np.float64).ravel()
        if sigma.shape != y.shape or np.any(sigma <= 0):
            raise InputError("sigma_cal must be positive and match the predictions")
        resid = resid / sigma
    return conformal_quantile(resid, alpha)


def coverage_report(
    y: np.ndarray,
    sets: np.ndarray | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    alpha: float | None = None,
) -> dict[str, float | list[float] | None]:
    """Empirical coverage and efficiency on test data: set sizes for classification, widths for regression."""
    y = np.asarray(y)
    out: dict[str, float | list[float] | None] = {
        "alpha": alpha,
        "target": None if alpha is None else 1 - alpha,
    }
    if sets is not None:
        sets = np.asarray(sets, dtype=bool)
        yi = y.astype(np.int64).ravel()
        covered = sets[np.arange(yi.size), yi]
        size = sets.sum(axis=1)
        out.update(
            coverage=float(covered.mean()),
            mean_set_size=float(size.mean()),
            singleton_rate=float(np.mean(size == 1)),
            empty_rate=float(np.mean(size == 0)),
            # coverage per true class: conformal guarantees the average, not each class
            class_coverage=[
                float(covered[yi == c].mean()) if np.any(yi == c) else None for c in range(sets.shape[1])
            ],
        )
    elif lower is not None and upper is not None:
        lo = np.asarray(lower, dtype=np.float64).ravel()
        hi = np.asarray(upper, dtype=np.float64).ravel()
        yf = y.astype(np.float64).ravel()
        out.update(coverage=float(np.mean((yf >= lo) & (yf <= hi))), mean_width=float(np.mean(hi - lo)))
    else:
        raise InputError("coverage_report needs either sets or lower and upper bounds")
    return out
