"""One image classifier on one upload: its answer, and the evidence the page shows beside it.

The answer is the task's own (predict_items, dataset, predictions; a cine's video row under the task's video
rule). First the applicability check: when the upload does not look like the run's training data the system
says "not applicable" and nothing else. Then, from the state `sonokit uncertainty RUN` fitted on validation
(sonokit.uncertainty.scorer.UncertaintyScorer, the one `sonokit predict --uncertainty` uses): temperature,
conformal set and abstention. Then Grad-CAM on the masked frame, and the nearest training cases with their
vote, the upload itself marked when it is one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.app.choices import Options
from sonokit.app.failures import SYSTEM_ERRORS, clean, one_line
from sonokit.app.images import mask, read_masked, unletterbox
from sonokit.app.models import Models, applicability, similar_index, uncertainty_scorer
from sonokit.errors import InputError

VIDEO_ROW = "all"  # the `frame` of a cine's aggregated row in task.predictions


@dataclass
class SimilarCase:
    label: str
    distance: float
    image: np.ndarray | None  # masked thumbnail, None when it could not be shown
    in_training_set: bool = False  # this neighbour is the upload itself (same file content, or distance ~0)


@dataclass
class ClassResult:
    model: str
    task: str
    classes: list[str]
    probs: np.ndarray  # (K,) for the answer row (the video row for cines)
    prediction: str
    top_k: list[tuple[str, float]]
    unit: str  # "image" or "video (N frames, rule)"
    frame: int | None = None  # frame shown with Grad-CAM (cines)
    conformal_set: list[str] | None = None
    set_level: float | None = None  # 1 - alpha of the conformal set, as `sonokit uncertainty` fitted it
    confidence: float | None = None  # temperature-scaled top probability (the CLI's `confidence`)
    abstain: bool | None = None
    abstain_reason: str = ""
    temperature: float | None = None
    gradcam: np.ndarray | None = None  # RGB overlay on the masked frame
    similar: list[SimilarCase] = field(default_factory=list)
    knn_vote: str = ""
    notes: list[str] = field(default_factory=list)
    # the applicability check (None: not available for this run, see notes); when False, no answer is shown
    applicable: bool | None = None
    applicability: float | None = (
        None  # share of in-domain validation items at least as far (median of frames)
    )
    applicability_rule: str = ""

    @property
    def answered(self) -> bool:
        """False when the upload does not look like the model's training data: its answer means nothing."""
        return self.applicable is not False


def classify(models: Models, run: Any, path: Path, original: dict[int, np.ndarray], sector: Any,
             options: Options) -> ClassResult:  # fmt: skip
    """The run's answer for the file at `path`; `original` holds frames already read, `sector` its region."""
    from sonokit.retrieval.runs import infer_with_embeddings
    from sonokit.uncertainty.applicability import score_set

    items, bad = run.task.predict_items([path])
    if bad:
        raise InputError(str(bad[0][1]).split(": ", 1)[-1], path)
    out = infer_with_embeddings(run, items.reset_index(drop=True), desc="app")
    res, i, logits = _answer(run, out, options.top_k)

    check = applicability(models, run)
    if isinstance(check, str):
        res.notes.append(check)
    else:  # a cine is applicable when most of its frames are
        res.applicable, res.applicability = score_set(check, out.embeddings)
        res.applicability_rule = check.rule()
        if not res.applicable:
            return res  # no set, no Grad-CAM, no similar cases: the model has nothing to say about this file

    scorer = uncertainty_scorer(models, run)
    if isinstance(scorer, str):
        res.notes.append(scorer)
    else:
        _calibrate(res, scorer, logits, options.alpha)

    if options.gradcam:
        try:
            res.gradcam = _gradcam(run, out.dataset, i, res.classes.index(res.prediction), path, res.frame,
                                   original, sector)  # fmt: skip
            if res.gradcam is None:
                res.notes.append("Grad-CAM not shown: no ultrasound region found to mask the image")
        except SYSTEM_ERRORS as err:
            res.notes.append(f"Grad-CAM failed: {clean(one_line(err), path, path.name)}")

    if options.similar and options.n_similar > 0:
        index = similar_index(models, run)
        if isinstance(index, str):
            res.notes.append(index)
        else:
            _similar(res, index, out.embeddings[i : i + 1], options.n_similar, path)
    return res


def _answer(run: Any, out: Any, top_k: int) -> tuple[ClassResult, int, np.ndarray]:
    """The answer (a cine's video row, else the first item), the item shown (the one most sure of it) and the
    (1, K) logits to calibrate: the item's own head logits, as `sonokit predict --uncertainty` scores it, or
    for a video row the log of its aggregated probabilities."""
    from sonokit.uncertainty import probs_to_logits

    task = run.task
    classes = list(task.classes)
    preds = task.predictions(out.collected, out.items)
    cols = [f"p_{c}" for c in classes]
    video = preds[preds["frame"].astype(str) == VIDEO_ROW] if "frame" in preds.columns else preds[:0]
    if len(video):
        probs = video[cols].to_numpy(float)[0]
        n = int((preds["frame"].astype(str) != VIDEO_ROW).sum())
        unit = f"video ({n} frames, {task.opts.video_rule} rule)"
        logits = probs_to_logits(probs[None])
    else:
        probs = preds[cols].to_numpy(float)[0]
        unit = "frame" if len(out.items) == 1 and "frame" in out.items.columns else "image"
        logits = np.asarray(out.logits[:1], dtype=np.float64)
    pred = int(np.argmax(probs))
    i = int(np.argmax(out.probs[:, pred]))
    order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
    res = ClassResult(
        model=run.name,
        task=task.name,
        classes=classes,
        probs=probs,
        prediction=classes[pred],
        top_k=[(classes[j], float(probs[j])) for j in order],
        unit=unit,
        frame=int(out.items["frame"].iloc[i]) if "frame" in out.items.columns else None,
    )
    return res, i, logits


def _calibrate(res: ClassResult, scorer: Any, logits: np.ndarray, alpha: float) -> None:
    """Temperature, conformal set and abstention from the run's fitted UncertaintyScorer: for an image, the
    numbers `sonokit predict --uncertainty` writes for it."""
    s = scorer.calibrate(logits)
    members = s["sets"][0]
    level = 1.0 - scorer.conformal.alpha
    res.temperature = scorer.temperature
    res.conformal_set = [c for c, m in zip(res.classes, members, strict=True) if m]
    res.set_level = level
    res.confidence = float(s["confidence"][0])
    res.abstain = bool(s["abstain"][0])
    reasons = []
    if res.confidence < scorer.abstain_threshold:
        reasons.append(f"confidence {res.confidence:.2f} < {scorer.abstain_threshold:.2f}")
    if members.sum() != 1:
        reasons.append(f"{int(members.sum())} classes in the {level:.0%} conformal set")
    res.abstain_reason = "; ".join(reasons)
    if scorer.calibration_note:
        res.notes.append(scorer.calibration_note)
    if not math.isclose(alpha, scorer.conformal.alpha):
        res.notes.append(
            f"conformal set at the {level:.0%} level `sonokit uncertainty` fitted; the alpha option sets the EF "
            "interval only"
        )


def _gradcam(run: Any, dataset: Any, i: int, target: int, path: Path, frame: int | None,
             original: dict[int, np.ndarray], sector: Any) -> np.ndarray | None:  # fmt: skip
    """Grad-CAM of item i for the predicted class, mapped back onto the masked original frame (None: no mask)."""
    from sonokit.data.frames import read_image
    from sonokit.explain import gradcam, overlay_heatmap
    from sonokit.tasks.base import normalise_batch

    image = original.get(frame or 0)
    if image is None:
        image = np.asarray(read_image(path, frame or 0))
    masked = mask(image, sector)
    if masked is None:
        return None
    x, _ = dataset.base[i]
    mean, std = run.cfg.channel_stats()
    heat = gradcam(run.model, normalise_batch(x.unsqueeze(0).to(run.device), mean, std), target=target)
    return overlay_heatmap(masked, unletterbox(heat, masked.shape[:2]) * (sector.mask > 0))


def _similar(res: ClassResult, index: Any, embedding: np.ndarray, k: int, path: Path) -> None:
    """The k nearest training cases (one per training file) and their vote; the upload itself is marked when it
    is one of them."""
    from sonokit.retrieval.runs import in_training_set

    idx, dist = index.query_distinct(embedding, k)
    hashes: dict[str, str] = {}
    vote = index.knn_vote(embedding, k, len(res.classes))[0]
    res.knn_vote = res.classes[int(np.argmax(vote))]
    frame = "" if res.frame is None else str(res.frame)
    for j, d in zip(idx[0], dist[0], strict=True):
        if j < 0:
            continue
        lab = int(index.labels[j])
        res.similar.append(
            SimilarCase(
                label=res.classes[lab] if 0 <= lab < len(res.classes) else "?",
                distance=float(d),
                image=read_masked(index.paths[j], index.frames[j]),
                in_training_set=in_training_set(
                    path, frame, index.paths[j], index.frames[j], float(d), hashes
                ),
            )
        )
