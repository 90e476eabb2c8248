"""Evaluation: metrics with bootstrap CIs, plots and the HTML report of a run."""

from sonokit.evaluate.bootstrap import bootstrap_ci, bootstrap_cis
from sonokit.evaluate.metrics import (
    classification_metrics,
    expected_calibration_error,
    regression_metrics,
)

__all__ = [
    "bootstrap_ci",
    "bootstrap_cis",
    "classification_metrics",
    "evaluate_run",
    "expected_calibration_error",
    "regression_metrics",
]


def evaluate_run(*args, **kwargs):
    """See sonokit.evaluate.runner.evaluate_run (imported lazily: it needs torch)."""
    from sonokit.evaluate.runner import evaluate_run as _run

    return _run(*args, **kwargs)
