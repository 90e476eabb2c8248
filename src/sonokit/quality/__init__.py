"""Image quality: robustness sweeps against corruptions, the corruption classifier's data, and the quality gate.

- `sweep`: metric vs corruption intensity and SSIM for any classifier (`robustness_sweep`, `find_thresholds`,
  `sweep_run` for a trained run folder);
- `dataset`: generated corruptions of clean images (`plan_corruptions`, `CorruptionDataset`, `model_input`);
- `gate`: keep/reject a folder of images with a trained quality run (`run_gate`, `check_with_run`);
- `plots`: robustness curves and accuracy-by-distortion bars.
The corruptions themselves are in `sonokit.augment.corruption`; the classifier is the `quality` task.
"""

from sonokit.quality.sweep import (
    PAPER_CORRUPTIONS,
    SweepResult,
    accuracy_metric,
    find_thresholds,
    metric_by_ssim,
    robustness_sweep,
    sweep_run,
)

__all__ = [
    "PAPER_CORRUPTIONS",
    "SweepResult",
    "accuracy_metric",
    "find_thresholds",
    "metric_by_ssim",
    "robustness_sweep",
    "sweep_run",
]
