"""Score new items the way `sonokit uncertainty` scored the test split: the state it fitted on validation.

`sonokit uncertainty RUN` saves RUN/uncertainty/scorer.json (temperature, LAC quantile, abstention and flag
thresholds, the selected correctness predictor) and scorer_val.npz (the calibrated validation softmax and
whether each prediction was right). Loading refits the correctness predictor on those arrays: the sklearn
models are small and seeded, so the refit is identical and no pickle is ever read. The state is tied to the
weights by their sha256; a retrained run must be analysed again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.errors import InputError, ModelError
from sonokit.uncertainty.calibration import apply_temperature
from sonokit.uncertainty.conformal import ConformalClassifier
from sonokit.uncertainty.correctness import CorrectnessPredictor
from sonokit.uncertainty.selective import abstain_flags
from sonokit.utils import atomic_path, atomic_write_json

SCORER_DIR = "uncertainty"
_STATE, _ARRAYS = "scorer.json", "scorer_val.npz"


@dataclass
class UncertaintyScorer:
    """Calibrate, set-predict, abstain, check correctness and fall back to the neighbours, for any new item."""

    classes: list[str]
    temperature: float
    conformal: ConformalClassifier  # LAC: the smallest sets
    abstain_threshold: float
    correctness_kind: str
    flag_threshold: float
    k: int
    seed: int
    weights_sha256: str
    probs_val: np.ndarray
    correct_val: np.ndarray
    calibration_note: str = ""  # whether the fitted temperature is used (TemperatureFit.note)
    _correctness: CorrectnessPredictor | None = field(default=None, repr=False)

    @classmethod
    def from_result(
        cls, result: Any, classes: list[str], k: int, seed: int, weights_sha256: str
    ) -> UncertaintyScorer:
        """The state of an analyse_classification() result (which must have had kNN probabilities)."""
        if result.combined_kind is None:
            raise InputError("the analysis had no kNN fallback, so there is no combined predictor to save")
        return cls(
            classes=list(classes),
            temperature=float(result.temperature),
            conformal=result.conformal["lac"],
            abstain_threshold=float(result.abstain_threshold),
            correctness_kind=result.combined_kind,
            flag_threshold=float(result.flag_threshold),
            k=int(k),
            seed=int(seed),
            weights_sha256=weights_sha256,
            probs_val=np.asarray(result.probs_val, dtype=np.float64),
            correct_val=np.asarray(result.correct_val, dtype=bool),
            calibration_note=str(result.summary.get("calibration", {}).get("note", "")),
        )

    # ------------------------------------------------------------------ persistence
    def save(self, run_dir: str | Path) -> Path:
        folder = Path(run_dir) / SCORER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / _ARRAYS) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, probs_val=self.probs_val, correct_val=self.correct_val)
        state = {
            "classes": self.classes,
            "temperature": self.temperature,
            "calibration_note": self.calibration_note,
            "conformal": self.conformal.to_dict(),
            "abstain_threshold": self.abstain_threshold,
            "correctness_kind": self.correctness_kind,
            "flag_threshold": self.flag_threshold,
            "k": self.k,
            "seed": self.seed,
            "weights_sha256": self.weights_sha256,
        }
        return atomic_write_json(folder / _STATE, state)

    @classmethod
    def load(cls, run_dir: str | Path, weights_sha256: str | None = None) -> UncertaintyScorer:
        folder = Path(run_dir) / SCORER_DIR
        if not (folder / _STATE).is_file() or not (folder / _ARRAYS).is_file():
            raise InputError(f"no uncertainty state: run `sonokit uncertainty {run_dir}` first", folder)
        state = json.loads((folder / _STATE).read_text(encoding="utf-8"))
        if weights_sha256 is not None and state.get("weights_sha256") != weights_sha256:
            raise ModelError(
                f"{folder}: fitted for other weights (the run was retrained); run `sonokit uncertainty "
                f"{run_dir}` again"
            )
        with np.load(folder / _ARRAYS) as arrays:
            probs_val, correct_val = arrays["probs_val"], arrays["correct_val"]
        c = state["conformal"]
        conformal = ConformalClassifier(
            qhat=float("inf") if c["qhat"] is None else float(c["qhat"]),
            alpha=float(c["alpha"]),
            method=c["method"],
            randomized=bool(c.get("randomized", True)),
            seed=int(state["seed"]),
            n_cal=int(c.get("n_cal", 0)),
        )
        return cls(
            classes=list(state["classes"]),
            temperature=float(state["temperature"]),
            conformal=conformal,
            abstain_threshold=float(state["abstain_threshold"]),
            correctness_kind=state["correctness_kind"],
            flag_threshold=float(state["flag_threshold"]),
            k=int(state["k"]),
            seed=int(state["seed"]),
            weights_sha256=str(state.get("weights_sha256", "")),
            probs_val=probs_val,
            correct_val=correct_val.astype(bool),
            calibration_note=str(state.get("calibration_note", "")),
        )

    # ------------------------------------------------------------------ scoring
    @property
    def correctness(self) -> CorrectnessPredictor:
        if self._correctness is None:
            self._correctness = CorrectnessPredictor(self.correctness_kind, self.seed).fit(
                self.probs_val, self.correct_val
            )
        return self._correctness

    def calibrate(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        """Per item: calibrated softmax, its top probability (confidence), the LAC set and abstain (confidence
        below the validation threshold, or more than one class in the set). Needs no neighbours, so it also
        serves a cine's aggregated row (the app's video answer)."""
        logits = np.asarray(logits, dtype=np.float64)
        if logits.ndim != 2 or logits.shape[1] != len(self.classes):
            raise InputError(f"expected (N, {len(self.classes)}) logits, got {logits.shape}")
        probs = apply_temperature(logits, self.temperature)
        sets = self.conformal.predict_sets(probs)
        confidence = probs.max(axis=1)
        return {
            "probs": probs,
            "confidence": confidence,
            "sets": sets,
            "abstain": abstain_flags(confidence, self.abstain_threshold, sets.sum(axis=1)),
        }

    def score(self, logits: np.ndarray, knn_probs: np.ndarray) -> dict[str, np.ndarray]:
        """`calibrate`, plus P(correct), flagged, and the combined distribution (the calibrated softmax, or the
        neighbours' vote where flagged), whose argmax is the combined answer."""
        logits = np.asarray(logits, dtype=np.float64)
        knn_probs = np.asarray(knn_probs, dtype=np.float64)
        if logits.ndim != 2 or logits.shape[1] != len(self.classes) or knn_probs.shape != logits.shape:
            raise InputError(
                f"expected (N, {len(self.classes)}) logits and kNN votes, got {logits.shape} and {knn_probs.shape}"
            )
        out = self.calibrate(logits)
        p_correct = self.correctness.predict_proba(out["probs"])
        flagged = p_correct < self.flag_threshold
        return {
            **out,
            "p_correct": p_correct,
            "flagged": flagged,
            "combined_probs": np.where(flagged[:, None], knn_probs, out["probs"]),
        }
