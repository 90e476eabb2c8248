"""Everything about one model's uncertainty in one call, plus the combined predictor of the LUS work.

Protocol (no test leakage): the temperature, the conformal quantile, the abstention threshold, the
correctness predictors and the flag threshold of the combined predictor are all fitted on validation
predictions; test predictions are used only to report. Thresholds chosen on validation use out-of-fold
(cross-fitted) correctness scores so they are not tuned on in-sample fits.

The temperature and the conformal quantile share the validation set. A single scalar fitted on it barely
breaks exchangeability, and the reported test coverage checks the guarantee empirically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sonokit.errors import InputError
from sonokit.evaluate.bootstrap import bootstrap_ci
from sonokit.evaluate.metrics import probs_to_logits
from sonokit.uncertainty.calibration import (
    apply_temperature,
    calibration_report,
    fit_calibration,
)
from sonokit.uncertainty.conformal import (
    ConformalClassifier,
    conformal_classification,
    conformal_regression,
    coverage_report,
)
from sonokit.uncertainty.correctness import (
    KINDS,
    CorrectnessPredictor,
    cross_fit_predict,
    error_auroc,
)
from sonokit.uncertainty.selective import abstain_flags, confidence_threshold, selective_report
from sonokit.utils import get_logger

log = get_logger(__name__)


def combined_predict(
    probs: np.ndarray,
    correctness_model: CorrectnessPredictor | np.ndarray,
    knn_probs: np.ndarray,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Classifier first; where the correctness model says "probably wrong", take the neighbours' vote instead.

    `correctness_model` is a fitted CorrectnessPredictor or an already computed (N,) P(correct).
    Returns (predictions, flagged).
    """
    probs = np.asarray(probs, dtype=np.float64)
    knn_probs = np.asarray(knn_probs, dtype=np.float64)
    if probs.shape != knn_probs.shape:
        raise InputError(
            f"classifier probabilities {probs.shape} and kNN probabilities {knn_probs.shape} differ"
        )
    if isinstance(correctness_model, CorrectnessPredictor):
        p_correct = correctness_model.predict_proba(probs)
    else:
        p_correct = np.asarray(correctness_model, dtype=np.float64).ravel()
    flagged = p_correct < threshold
    preds = probs.argmax(axis=1)
    preds[flagged] = knn_probs[flagged].argmax(axis=1)
    return preds, flagged


def choose_flag_threshold(
    p_correct: np.ndarray, probs: np.ndarray, knn_probs: np.ndarray, y: np.ndarray
) -> float:
    """The P(correct) cut that maximises combined accuracy on validation (0 = never flag, on ties the lowest)."""
    y = np.asarray(y).astype(np.int64).ravel()
    p = np.asarray(p_correct, dtype=np.float64).ravel()
    plain_ok = np.asarray(probs).argmax(axis=1) == y
    knn_ok = np.asarray(knn_probs).argmax(axis=1) == y
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    # flagging the m lowest-P(correct) items swaps their plain outcome for the kNN outcome
    gain = np.r_[0, np.cumsum(knn_ok[order].astype(int) - plain_ok[order].astype(int))]
    # a cut can only fall between distinct values: m must be 0 or the end of a run of equal p
    valid = np.r_[True, np.r_[p_sorted[1:] != p_sorted[:-1], True]]
    m = int(np.flatnonzero(valid)[np.argmax(gain[valid])])  # argmax takes the first (smallest) best m
    return 0.0 if m == 0 else float(np.nextafter(p_sorted[m - 1], np.inf))  # flags p <= that value


@dataclass
class UncertaintyResult:
    """The JSON summary plus the per-item test arrays the CLI turns into plots and CSV columns."""

    summary: dict[str, Any]
    temperature: float
    probs_test: np.ndarray  # temperature-scaled
    p_correct_test: dict[str, np.ndarray] = field(default_factory=dict)
    sets_test: dict[str, np.ndarray] = field(default_factory=dict)
    abstain_test: np.ndarray | None = None
    combined_test: np.ndarray | None = None
    # what was fitted on validation, for scoring new items the same way (sonokit.uncertainty.scorer)
    probs_val: np.ndarray | None = None  # temperature-scaled
    correct_val: np.ndarray | None = None
    conformal: dict[str, ConformalClassifier] = field(default_factory=dict)
    abstain_threshold: float = 0.0
    combined_kind: str | None = None  # correctness predictor selected on validation
    flag_threshold: float = 0.0  # flag (use the neighbours) where P(correct) < this


def _logits(probs: np.ndarray, logits: np.ndarray | None) -> np.ndarray:
    return probs_to_logits(probs) if logits is None else np.asarray(logits, dtype=np.float64)


def analyse_classification(
    probs_val: np.ndarray,
    y_val: np.ndarray,
    probs_test: np.ndarray,
    y_test: np.ndarray,
    alpha: float = 0.1,
    logits_val: np.ndarray | None = None,
    logits_test: np.ndarray | None = None,
    knn_probs_val: np.ndarray | None = None,
    knn_probs_test: np.ndarray | None = None,
    kinds: tuple[str, ...] = KINDS,
    coverage: float = 0.8,
    n_bins: int = 15,
    seed: int = 0,
    groups_test: np.ndarray | None = None,
    n_boot: int = 1000,
) -> UncertaintyResult:
    """Calibration, conformal sets, selective prediction, correctness predictors and the combined predictor.

    `groups_test` (patient per test item) makes the bootstrap CI of combined minus plain accuracy resample
    patients, as frames of one video are not independent."""
    probs_val = np.asarray(probs_val, dtype=np.float64)
    probs_test = np.asarray(probs_test, dtype=np.float64)
    y_val = np.asarray(y_val).astype(np.int64).ravel()
    y_test = np.asarray(y_test).astype(np.int64).ravel()
    if probs_val.shape[1] != probs_test.shape[1]:
        raise InputError(f"validation has {probs_val.shape[1]} classes but test has {probs_test.shape[1]}")

    lv, lt = _logits(probs_val, logits_val), _logits(probs_test, logits_test)
    fit = fit_calibration(lv, y_val, n_bins)
    temp = fit.temperature  # 1.0 when the fitted T made validation ECE worse
    cal_val, cal_test = apply_temperature(lv, temp), apply_temperature(lt, temp)
    raw_test = apply_temperature(lt, 1.0)
    before, after = calibration_report(raw_test, y_test, n_bins), calibration_report(cal_test, y_test, n_bins)
    summary: dict[str, Any] = {
        "n_val": int(y_val.size),
        "n_test": int(y_test.size),
        "n_classes": int(probs_val.shape[1]),
        "accuracy_test": before["accuracy"],
        "calibration": {
            **fit.to_dict(),
            "fitted_on": "val",
            "test_ece_worse": bool(after["ece"] > before["ece"]),
            "test_before": before,
            "test_after": after,
            "ece_before": before["ece"],
            "ece_after": after["ece"],
            "nll_before": before["nll"],
            "nll_after": after["nll"],
        },
    }
    correct_val = cal_val.argmax(axis=1) == y_val
    result = UncertaintyResult(
        summary=summary, temperature=temp, probs_test=cal_test, probs_val=cal_val, correct_val=correct_val
    )

    conformal: dict[str, Any] = {}
    for method in ("lac", "aps"):
        cc = conformal_classification(cal_val, y_val, alpha, method=method, seed=seed)
        result.conformal[method] = cc
        sets = cc.predict_sets(cal_test)
        result.sets_test[method] = sets
        conformal[method] = {**cc.to_dict(), **coverage_report(y_test, sets=sets, alpha=alpha)}
    summary["conformal"] = conformal

    conf_val, conf_test = cal_val.max(axis=1), cal_test.max(axis=1)
    correct_test = cal_test.argmax(axis=1) == y_test
    thr = confidence_threshold(conf_val, coverage)
    result.abstain_threshold = thr
    summary["selective"] = selective_report(conf_test, correct_test, threshold=thr, coverage=coverage)
    abstain = abstain_flags(conf_test, thr, set_sizes=result.sets_test["lac"].sum(axis=1))
    result.abstain_test = abstain
    summary["abstain"] = {
        "rule": f"confidence < {thr:.4f} (val {int(coverage * 100)}% coverage) or LAC set size > 1",
        "rate": float(abstain.mean()),
        "rate_low_confidence": float(np.mean(conf_test < thr)),
        "rate_set_size_gt1": float(np.mean(result.sets_test["lac"].sum(axis=1) > 1)),
        "accuracy_answered": float(correct_test[~abstain].mean()) if (~abstain).any() else float("nan"),
        "accuracy_abstained": float(correct_test[abstain].mean()) if abstain.any() else float("nan"),
    }

    correctness: dict[str, Any] = {}
    oof: dict[str, np.ndarray] = {}
    for kind in kinds:
        oof[kind] = cross_fit_predict(kind, cal_val, correct_val, seed=seed)
        model = CorrectnessPredictor(kind, seed).fit(cal_val, correct_val)
        p_test = model.predict_proba(cal_test)
        result.p_correct_test[kind] = p_test
        correctness[kind] = {
            "auroc_val_crossfit": error_auroc(oof[kind], correct_val),
            "auroc_test": error_auroc(p_test, correct_test),
            "aurc_test": selective_report(p_test, correct_test, coverage=coverage)["aurc"],
        }
    summary["correctness"] = correctness

    if knn_probs_val is not None and knn_probs_test is not None:
        combined = _combined_summary(
            cal_val, y_val, cal_test, y_test, knn_probs_val, knn_probs_test, oof, result, seed
        )
        if result.combined_test is not None:
            gain = (result.combined_test == y_test).astype(float) - (cal_test.argmax(1) == y_test)
            combined["accuracy_gain"] = float(gain.mean())
            combined["accuracy_gain_ci95"] = bootstrap_ci(
                np.mean, gain, n_boot=n_boot, seed=seed, groups=groups_test
            )
            combined["ci_method"] = "bootstrap over patients" if groups_test is not None else "bootstrap"
        summary["combined"] = combined
    return result


def _combined_summary(
    cal_val: np.ndarray,
    y_val: np.ndarray,
    cal_test: np.ndarray,
    y_test: np.ndarray,
    knn_val: np.ndarray,
    knn_test: np.ndarray,
    oof: dict[str, np.ndarray],
    result: UncertaintyResult,
    seed: int,
) -> dict[str, Any]:
    knn_val, knn_test = np.asarray(knn_val, dtype=np.float64), np.asarray(knn_test, dtype=np.float64)
    out: dict[str, Any] = {
        "accuracy_plain": float(np.mean(cal_test.argmax(axis=1) == y_test)),
        "accuracy_knn": float(np.mean(knn_test.argmax(axis=1) == y_test)),
        "by_correctness_model": {},
    }
    best_kind, best_val = None, -1.0
    for kind, p_oof in oof.items():
        t = choose_flag_threshold(p_oof, cal_val, knn_val, y_val)
        val_acc = float(np.mean(combined_predict(cal_val, p_oof, knn_val, t)[0] == y_val))
        preds, flagged = combined_predict(cal_test, result.p_correct_test[kind], knn_test, t)
        fixed, _ = combined_predict(cal_test, result.p_correct_test[kind], knn_test, 0.5)
        out["by_correctness_model"][kind] = {
            "threshold": t,
            "val_accuracy_crossfit": val_acc,
            "flagged_rate": float(flagged.mean()),
            "accuracy": float(np.mean(preds == y_test)),
            "accuracy_threshold_0.5": float(np.mean(fixed == y_test)),
        }
        if val_acc > best_val:
            best_kind, best_val = kind, val_acc
            result.combined_test = preds
            result.combined_kind, result.flag_threshold = kind, t
    out["selected_by_val"] = best_kind
    out["accuracy_combined"] = (
        out["by_correctness_model"][best_kind]["accuracy"] if best_kind else float("nan")
    )
    return out


def uncertainty_summary(
    probs_val: np.ndarray, y_val: np.ndarray, probs_test: np.ndarray, y_test: np.ndarray, **kwargs: Any
) -> dict[str, Any]:
    """JSON-able dict: ECE/NLL before and after, conformal coverage and set size, correctness AUROCs, AURC,
    risk at 80% coverage, and plain vs combined accuracy when kNN probabilities are given (the keyword
    arguments of analyse_classification)."""
    return analyse_classification(probs_val, y_val, probs_test, y_test, **kwargs).summary


def regression_summary(
    pred_val: np.ndarray,
    y_val: np.ndarray,
    pred_test: np.ndarray,
    y_test: np.ndarray,
    alpha: float = 0.1,
    sigma_val: np.ndarray | None = None,
    sigma_test: np.ndarray | None = None,
) -> dict[str, Any]:
    """Conformal intervals for a regression target such as EF: absolute residual, and normalised when the
    model gives a per-item spread (e.g. the std over clips of one video)."""
    pred_test = np.asarray(pred_test, dtype=np.float64).ravel()
    y_test = np.asarray(y_test, dtype=np.float64).ravel()
    q = conformal_regression(pred_val, y_val, alpha)
    out: dict[str, Any] = {
        "n_val": int(np.size(y_val)),
        "n_test": int(y_test.size),
        "mae_test": float(np.mean(np.abs(pred_test - y_test))),
        "absolute": {
            "qhat": q,
            **coverage_report(y_test, lower=pred_test - q, upper=pred_test + q, alpha=alpha),
        },
    }
    if sigma_val is not None and sigma_test is not None:
        sigma_test = np.asarray(sigma_test, dtype=np.float64).ravel()
        qn = conformal_regression(pred_val, y_val, alpha, sigma_cal=sigma_val)
        half = qn * sigma_test
        out["normalised"] = {
            "qhat": qn,
            **coverage_report(y_test, lower=pred_test - half, upper=pred_test + half, alpha=alpha),
        }
        err = np.abs(pred_test - y_test)
        order = np.argsort(sigma_test, kind="stable")[: max(1, int(np.ceil(0.8 * y_test.size)))]
        out["mae_at_80_by_sigma"] = float(err[order].mean())
    return out
