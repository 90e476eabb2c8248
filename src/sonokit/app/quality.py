"""The quality gate on one frame: the quality task's own prediction and sonokit.quality.gate's keep/reject."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sonokit.app.images import gray


@dataclass
class QualityVerdict:
    model: str
    label: str  # most likely class: original / scale_up / blur / noise
    probability: float
    p_corrupted: float
    ssim_est: float
    decision: str  # keep / reject
    probs: dict[str, float]
    frame: int = 0

    @property
    def looks_corrupted(self) -> bool:
        return self.decision == "reject"


def assess_quality(run: Any, image: np.ndarray, frame: int, threshold: float) -> QualityVerdict:
    """The verdict on `image` (frame `frame` of the upload): reject when P(corrupted) >= threshold."""
    from sonokit.quality.gate import decide

    classes = list(run.task.classes)
    from sonokit.predict import Predictor

    out = Predictor(run).arrays([gray(image)])
    probs, ssim = out["probs"], out["ssim_pred"]
    p = np.asarray(probs, dtype=float)
    j = int(p[0].argmax())
    return QualityVerdict(
        model=run.name,
        label=classes[j],
        probability=float(p[0, j]),
        p_corrupted=1.0 - float(p[0, classes.index("original")]),
        ssim_est=float(np.asarray(ssim)[0]),
        decision=str(decide(p, classes, threshold)[0]),
        probs=dict(zip(classes, p[0].tolist(), strict=True)),
        frame=frame,
    )
