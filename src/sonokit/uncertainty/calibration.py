"""Temperature scaling and calibration metrics.

A network's softmax is usually over-confident; one scalar temperature fitted on validation data fixes most of
that without changing any prediction (Guo et al. 2017). When only probabilities are stored (predictions CSVs),
log-probabilities serve as logits: softmax is invariant to a per-row constant, so scaling log p by 1/T is the
same operation.

The fitted temperature minimises validation NLL, which is not the same as lowering ECE: a few confidently wrong
items can pull T far enough to make the rest under-confident. `fit_calibration` checks the fitted T on validation
ECE and keeps T = 1 (no scaling) when it made ECE worse, saying so, so a worse calibration is never applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sonokit.errors import InputError

# one ECE and one binning for the whole project: the evaluation module's (same (lo, hi] equal-width bins)
from sonokit.evaluate.metrics import expected_calibration_error, softmax
from sonokit.utils import get_logger

log = get_logger(__name__)

_EPS = 1e-12


def _check_probs_labels(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).ravel()
    if probs.ndim != 2:
        raise InputError(f"expected a (N, K) probability array, got shape {probs.shape}")
    if probs.shape[0] != y.shape[0]:
        raise InputError(f"{probs.shape[0]} probability rows but {y.shape[0]} labels")
    if probs.shape[0] == 0:
        raise InputError("no rows to evaluate")
    if y.min() < 0 or y.max() >= probs.shape[1]:
        raise InputError(f"labels must lie in [0, {probs.shape[1] - 1}], got [{y.min()}, {y.max()}]")
    return probs, y


def fit_temperature(logits_val: np.ndarray, y_val: np.ndarray, max_iter: int = 100) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T) on validation data.

    Optimised with LBFGS over log T, so T stays positive without constraints and the problem is smooth.
    """
    import torch

    logits_np, y_np = _check_probs_labels(logits_val, y_val)
    logits = torch.as_tensor(logits_np, dtype=torch.float64)
    y = torch.as_tensor(y_np)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not np.isfinite(t) or t <= 0:
        log.warning("temperature fit diverged (T=%s); using T=1", t)
        return 1.0
    return float(np.clip(t, 1e-2, 1e2))


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and whether it is used: `temperature` is the one to apply (1.0 when not used)."""

    fitted: float  # the NLL-optimal T on validation
    used: bool  # False when the fitted T made validation ECE worse
    ece_val_before: float
    ece_val_after: float  # validation ECE with the fitted T

    @property
    def temperature(self) -> float:
        return self.fitted if self.used else 1.0

    @property
    def note(self) -> str:
        """One line for reports: what was fitted and whether it is applied."""
        change = f"validation ECE {self.ece_val_before:.4f} -> {self.ece_val_after:.4f}"
        if self.used:
            return f"temperature scaling used: T = {self.fitted:.3f} ({change})"
        return (
            f"temperature scaling not used: the fitted T = {self.fitted:.3f} made {change} worse, so T = 1 "
            "(probabilities as the model gives them)"
        )

    def to_dict(self) -> dict[str, float | bool | str]:
        return {
            "temperature": self.temperature,
            "fitted_temperature": self.fitted,
            "used": self.used,
            "ece_val_before": self.ece_val_before,
            "ece_val_after": self.ece_val_after,
            "note": self.note,
        }


def fit_calibration(logits_val: np.ndarray, y_val: np.ndarray, n_bins: int = 15) -> TemperatureFit:
    """fit_temperature, then keep it only if it does not raise validation ECE (ties keep the fitted T)."""
    logits, y = _check_probs_labels(logits_val, y_val)
    fitted = fit_temperature(logits, y)
    before = float(expected_calibration_error(apply_temperature(logits, 1.0), y, n_bins))
    after = float(expected_calibration_error(apply_temperature(logits, fitted), y, n_bins))
    fit = TemperatureFit(fitted=fitted, used=after <= before, ece_val_before=before, ece_val_after=after)
    if not fit.used:
        log.info(fit.note)
    return fit


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(logits / T)."""
    return softmax(np.asarray(logits, dtype=np.float64) / float(temperature))


def negative_log_likelihood(probs: np.ndarray, y: np.ndarray) -> float:
    probs, y = _check_probs_labels(probs, y)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], _EPS, 1.0))))


def brier_score(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score: mean squared distance between the probability vector and the one-hot label."""
    probs, y = _check_probs_labels(probs, y)
    onehot = np.eye(probs.shape[1])[y]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def calibration_report(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """ECE, NLL, Brier and accuracy of one set of probabilities."""
    probs, y = _check_probs_labels(probs, y)
    return {
        "ece": float(expected_calibration_error(probs, y, n_bins)),
        "nll": negative_log_likelihood(probs, y),
        "brier": brier_score(probs, y),
        "accuracy": float(np.mean(probs.argmax(axis=1) == y)),
    }
