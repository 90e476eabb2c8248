"""Selective prediction: answer only when confident enough, and measure what that buys.

The risk-coverage curve orders items by confidence and plots the error rate among the most confident
fraction; AURC is its area (lower is better, Geifman & El-Yaniv 2017). Ties in confidence are kept together,
so the curve does not depend on the order of equally confident items.
"""

from __future__ import annotations

import numpy as np

from sonokit.errors import InputError


def _check(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    ok = np.asarray(correct).astype(bool).ravel()
    if conf.shape != ok.shape or conf.size == 0:
        raise InputError(
            f"confidence ({conf.size}) and correct ({ok.size}) must be non-empty and equal in length"
        )
    return conf, ok


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and selective risk (error rate among accepted items) at every distinct confidence threshold."""
    conf, ok = _check(confidence, correct)
    order = np.argsort(-conf, kind="stable")
    conf_sorted = conf[order]
    errors = np.cumsum(~ok[order])
    # last position of each run of equal confidence: accepting a threshold accepts the whole tie group
    ends = np.flatnonzero(np.r_[conf_sorted[1:] != conf_sorted[:-1], True])
    accepted = ends + 1
    return accepted / conf.size, errors[ends] / accepted


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk-coverage curve (step integral; equals the mean of per-position risks without ties)."""
    cov, risk = risk_coverage(confidence, correct)
    widths = np.diff(np.r_[0.0, cov])
    return float(np.sum(widths * risk))


def optimal_aurc(correct: np.ndarray) -> float:
    """AURC of a perfect confidence ranking (all correct items first): the floor for this error rate."""
    ok = np.asarray(correct).astype(bool).ravel()
    return aurc(ok.astype(np.float64), ok)


def risk_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float = 0.8) -> float:
    """Error rate among the ceil(coverage * N) most confident items."""
    conf, ok = _check(confidence, correct)
    if not 0.0 < coverage <= 1.0:
        raise InputError(f"coverage must lie in (0, 1], got {coverage}")
    m = max(1, int(np.ceil(coverage * conf.size - 1e-9)))
    order = np.argsort(-conf, kind="stable")[:m]
    return float(np.mean(~ok[order]))


def confidence_threshold(confidence_val: np.ndarray, coverage: float = 0.8) -> float:
    """Threshold t such that about `coverage` of validation items have confidence >= t."""
    conf = np.sort(np.asarray(confidence_val, dtype=np.float64).ravel())[::-1]
    if conf.size == 0:
        raise InputError("no validation confidences to set a threshold")
    m = max(1, int(np.ceil(coverage * conf.size - 1e-9)))
    return float(conf[m - 1])


def abstain_flags(
    confidence: np.ndarray, threshold: float, set_sizes: np.ndarray | None = None
) -> np.ndarray:
    """True where the model should not answer alone: confidence below threshold, or a conformal set with >1 class."""
    flags = np.asarray(confidence, dtype=np.float64).ravel() < threshold
    if set_sizes is not None:
        flags |= np.asarray(set_sizes).ravel() > 1
    return flags


def selective_report(
    confidence: np.ndarray, correct: np.ndarray, threshold: float | None = None, coverage: float = 0.8
) -> dict[str, float]:
    """AURC, excess AURC, risk at `coverage`, and (with a validation threshold) the realised coverage and risk."""
    conf, ok = _check(confidence, correct)
    a = aurc(conf, ok)
    out = {
        "risk_full": float(np.mean(~ok)),
        "aurc": a,
        "eaurc": a - optimal_aurc(ok),
        f"risk_at_{int(round(coverage * 100))}": risk_at_coverage(conf, ok, coverage),
    }
    if threshold is not None:
        accepted = conf >= threshold
        out["threshold"] = float(threshold)
        out["coverage_at_threshold"] = float(accepted.mean())
        out["risk_at_threshold"] = float(np.mean(~ok[accepted])) if accepted.any() else float("nan")
    return out
