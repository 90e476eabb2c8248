"""Know when the model is unsure: calibration, conformal sets, selective prediction, correctness predictors.

Everything here works on arrays (logits, probabilities, labels), so it serves any classification task and,
through conformal intervals, regression such as EF.
"""

from sonokit.evaluate.metrics import probs_to_logits, reliability_bins
from sonokit.uncertainty.calibration import (
    TemperatureFit,
    apply_temperature,
    brier_score,
    calibration_report,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    negative_log_likelihood,
)
from sonokit.uncertainty.conformal import (
    ConformalClassifier,
    conformal_classification,
    conformal_quantile,
    conformal_regression,
    coverage_report,
)
from sonokit.uncertainty.correctness import (
    CorrectnessPredictor,
    correctness_features,
    cross_fit_predict,
    error_auroc,
)
from sonokit.uncertainty.pipeline import (
    UncertaintyResult,
    analyse_classification,
    choose_flag_threshold,
    combined_predict,
    regression_summary,
    uncertainty_summary,
)
from sonokit.uncertainty.plots import plot_reliability, plot_risk_coverage
from sonokit.uncertainty.selective import (
    abstain_flags,
    aurc,
    confidence_threshold,
    risk_at_coverage,
    risk_coverage,
    selective_report,
)

__all__ = [
    "ConformalClassifier",
    "CorrectnessPredictor",
    "TemperatureFit",
    "UncertaintyResult",
    "abstain_flags",
    "analyse_classification",
    "apply_temperature",
    "aurc",
    "brier_score",
    "calibration_report",
    "choose_flag_threshold",
    "combined_predict",
    "confidence_threshold",
    "conformal_classification",
    "conformal_quantile",
    "conformal_regression",
    "correctness_features",
    "coverage_report",
    "cross_fit_predict",
    "error_auroc",
    "expected_calibration_error",
    "fit_calibration",
    "fit_temperature",
    "negative_log_likelihood",
    "plot_reliability",
    "plot_risk_coverage",
    "probs_to_logits",
    "regression_summary",
    "reliability_bins",
    "risk_at_coverage",
    "risk_coverage",
    "selective_report",
    "uncertainty_summary",
]
