"""`sonokit predict --uncertainty`: the combined pipeline of the lung-ultrasound work on new files.

Per image or frame: the classifier's temperature-scaled confidence, its conformal set, an abstain flag, the
correctness check's P(correct), and where that check flags the prediction, the answer of the k nearest training
items instead (the combined prediction), plus the nearest training item itself so a reader can look at it, and
whether the item looks like the training data at all (`applicability`, a p-value against validation, and
`applicable`; sonokit.uncertainty.applicability). Everything was fitted on validation by `sonokit uncertainty
RUN` (sonokit.uncertainty.scorer); the model's head is hooked so one forward pass gives both the logits and the
embedding. A video's `all` row is applicable when most of its frames are, with their median applicability.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sonokit.errors import InputError
from sonokit.uncertainty.applicability import load_or_fit
from sonokit.uncertainty.scorer import UncertaintyScorer

COLUMNS = (
    "confidence",
    "conformal_set",
    "abstain",
    "p_correct",
    "flagged",
    "knn_pred",
    "combined_pred",
    "nearest_path",
    "nearest_frame",
    "nearest_distance",
    "applicability",
    "applicable",
)


class UncertaintyColumns:
    """Captures embeddings and logits while the run's model predicts, then adds COLUMNS to its rows."""

    def __init__(self, run: Any) -> None:
        from sonokit.core.run import weights_fingerprint
        from sonokit.models.capture import HeadCapture
        from sonokit.retrieval.runs import load_or_build_index
        from sonokit.tasks.base import FrameClassifier

        task = run.task
        if not isinstance(task, FrameClassifier):
            raise InputError(f"--uncertainty covers classification tasks, not {task.name}", run.run_dir)
        self.task = task
        self.scorer = UncertaintyScorer.load(run.run_dir, weights_fingerprint(run.run_dir))
        self.index = load_or_build_index(run)
        self.applicability = load_or_fit(run)
        self.names = np.asarray(task.classes, dtype=object)
        self._capture = HeadCapture(run.model)

    def take(self) -> dict[str, np.ndarray]:
        """The arrays captured since the last call, to travel with the batch's collected outputs."""
        emb, logits = self._capture.take()
        return {"_emb": emb, "_logits": logits}

    def close(self) -> None:
        self._capture.close()

    def annotate(self, preds: pd.DataFrame, collected: dict[str, np.ndarray]) -> pd.DataFrame:
        """Fill COLUMNS: item rows (the first len(collected) rows of task.predictions) get everything, each
        video's aggregated row gets the combined prediction under the task's own video rule."""
        from sonokit.retrieval.runs import class_logits

        n = len(collected["index"])
        k = len(self.names)
        logits = class_logits(collected["_logits"], collected["probs"])
        emb = collected["_emb"]
        knn = self.index.knn_vote(emb, self.scorer.k, k)
        s = self.scorer.score(logits, knn)
        near_i, near_d = self.index.query(emb, 1)
        j = near_i[:, 0]
        items = preds.iloc[:n].copy()
        items["confidence"] = s["confidence"]
        items["conformal_set"] = ["|".join(self.names[row]) for row in s["sets"]]
        items["abstain"] = s["abstain"]
        items["p_correct"] = s["p_correct"]
        items["flagged"] = s["flagged"]
        items["knn_pred"] = self.names[knn.argmax(axis=1)]
        items["combined_pred"] = self.names[s["combined_probs"].argmax(axis=1)]
        items["nearest_path"] = np.asarray(self.index.paths, dtype=object)[j]
        items["nearest_frame"] = np.asarray(self.index.frames, dtype=object)[j]
        items["nearest_distance"] = near_d[:, 0]
        fit = self.applicability.score(emb)
        items["applicability"] = fit["applicability"]
        items["applicable"] = fit["applicable"]
        videos = preds.iloc[n:].copy()
        if len(videos):
            frames = items.copy()
            frames[self.task.prob_columns()] = s["combined_probs"]
            combined = self.task.video_rows(frames).set_index("path")["y_pred"]
            videos["combined_pred"] = videos["path"].map(combined).fillna("")
            per_video = items.groupby("path").agg(
                applicability=("applicability", "median"), applicable=("applicable", "mean")
            )
            videos["applicability"] = videos["path"].map(per_video["applicability"])
            videos["applicable"] = videos["path"].map(per_video["applicable"] >= 0.5)
        out = pd.concat([items, videos], ignore_index=True)
        return out.reindex(columns=[*preds.columns, *COLUMNS])
