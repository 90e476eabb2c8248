"""One uploaded file through every chosen system, as plain data the page (or a test) renders.

No Streamlit here: `analyse_upload(name, data, models, options)` writes the bytes to a private temporary folder,
runs the systems and deletes the folder, and returns a StudyResult of numbers, numpy images and bytes. The work
itself is done by the systems' own library functions:

    header          sonokit.io.describe (DICOM: its allow-listed, de-identified summary)
    quality gate    the quality task's predict_arrays + sonokit.quality.gate.decide
    echo            sonokit.echo.predict.predict_study (EF, EDV/ESV, class, beats, overlay WebM) and, for the
                    chart, the LV model's measure_lv area curve; the EF interval is split-conformal on the EF
                    run's validation predictions (sonokit.uncertainty.conformal_regression)
    classifiers     the task's own predict_items / dataset / predictions; first the applicability check
                    (sonokit.uncertainty.applicability: does the upload look like the run's training data? If
                    not, the system gives "not applicable" and nothing else); Grad-CAM (sonokit.explain);
                    conformal sets and abstention fitted on the run's validation predictions
                    (sonokit.uncertainty); similar training cases (sonokit.retrieval.runs), the upload itself
                    marked when it is one of them
    aortic valve    sonokit.av.cascade.Cascade (box, crop, calcification probability)

Every image that reaches the page is masked outside the detected ultrasound region first (burned-in names and
dates live there); when no region is found, the image is not shown at all. A file that cannot be read gives a
result with `error` set; a system that fails on a readable file gives that section an error; neither stops the
other files or systems. Error messages name the file by its upload name, never by the temporary path.

`checkpoint(stage)`, when given, is called before each step (reading, then each system). The page passes a
function that updates its progress bar: every Streamlit call is where Streamlit stops a script whose browser
session has ended (it raises its StopException there), so an analysis stops at the next step after the user
leaves instead of running to the end. A step already started finishes; the size limits bound it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.errors import InputError, SonokitError
from sonokit.utils import get_logger

log = get_logger(__name__)

#: header fields never shown (the temporary path) or shown elsewhere
_HIDDEN_HEADER = {"path", "regions", "transfer_syntax_uid"}
_MAX_SECTOR_FRAMES = 16
_AV_FRAMES = 8
_THUMB = 160
#: what a system may raise on a readable but unsuitable file; caught per system so the others still run
_SYSTEM_ERRORS = (SonokitError, OSError, ValueError, RuntimeError, IndexError, KeyError)


# ---------------------------------------------------------------------------------------------- choices


@dataclass(frozen=True)
class Selection:
    """The run folders picked in the sidebar (None / empty: that system is not run)."""

    ef: str | None = None  # an `ef` (video) run
    lv: str | None = None  # an `lv-seg` or `lv-trace` run
    classifiers: tuple[str, ...] = ()  # fetal-plane, lus, classify ... runs
    quality: str | None = None
    av_detect: str | None = None
    av_calcification: str | None = None

    def is_empty(self) -> bool:
        return not (self.ef or self.lv or self.classifiers or self.quality or self.av_detect)


@dataclass(frozen=True)
class Options:
    """The sidebar's options; frames/period None keep the EF model's own clip sampling."""

    thresholds: str = "default"
    ef_headline: str = "video"  # which model gives the headline EF when both are chosen: "video" or "lv"
    frames: int | None = None
    period: int | None = None
    alpha: float = 0.1
    top_k: int = 3
    n_similar: int = 5
    quality_threshold: float = 0.5
    av_threshold: float | None = None  # valve detection score threshold (None: the detector run's own)
    gradcam: bool = True
    similar: bool = True


# ---------------------------------------------------------------------------------------------- results


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


@dataclass
class EchoResult:
    models: list[str]
    ef: float
    ef_source: str
    heart_class: str
    thresholds: str
    interval: tuple[float, float] | None = None  # conformal (1 - alpha) interval for the video EF
    interval_note: str = ""
    interval_level: float = 0.0  # 1 - alpha
    edv: float = math.nan
    esv: float = math.nan
    volume_unit: str = ""
    ef_video: float = math.nan
    ef_video_sd: float = math.nan
    ef_video_beats: float = math.nan
    ef_lv: float = math.nan
    beats: list[dict[str, Any]] = field(default_factory=list)  # beat, ed, es, edv, esv, ef
    curve: np.ndarray | None = None  # LV area per frame (cm^2 or model pixels^2)
    curve_label: str = ""
    ed: list[int] = field(default_factory=list)  # ED / ES frames marked on the curve
    es: list[int] = field(default_factory=list)
    fps: float | None = None
    n_frames: int = 0
    overlay_webm: bytes | None = None
    row: dict[str, Any] = field(default_factory=dict)  # predict_study's full row (the CSV)
    flags: str = ""  # why (part of) the answer should not be trusted, per model (the row's `flags`)
    not_applicable: list[str] = field(
        default_factory=list
    )  # runs whose training data the cine does not look like


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


@dataclass
class AVResult:
    status: str  # ok / no valve found / not applicable
    score: float
    frame: int
    box: tuple[float, float, float, float] | None = None
    p_calcified: float = math.nan
    calcified: str = ""
    boxed: np.ndarray | None = None  # masked frame with the box drawn (RGB)
    crop: np.ndarray | None = None  # masked crop
    frames_checked: int = 1
    model: str = ""  # detector + classifier run names


@dataclass
class StudyResult:
    """Everything the page shows for one upload. `sections` maps a system to "ok", a note or an error."""

    name: str
    kind: str = ""
    error: str = ""
    header: dict[str, Any] = field(default_factory=dict)
    preview: np.ndarray | None = None  # masked middle frame
    masked: bool = False
    mask_note: str = ""
    quality: QualityVerdict | None = None
    echo: EchoResult | None = None
    classifications: list[ClassResult] = field(default_factory=list)
    av: AVResult | None = None
    errors: dict[str, str] = field(default_factory=dict)  # system -> one-line error
    notes: dict[str, str] = field(default_factory=dict)  # system -> why it did not run on this file
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- models


@dataclass
class Calibration:
    """What the run's validation predictions say about trusting one answer (fitted once per run and alpha)."""

    temperature: float
    conformal: Any  # sonokit.uncertainty.ConformalClassifier
    threshold: float  # confidence below which the model abstains (80 % coverage on validation)
    n_val: int
    note: str = ""  # set when the fitted temperature is not used (it made validation ECE worse)


@dataclass
class Models:
    """Loaded runs for one Selection (load once, reuse for every upload)."""

    selection: Selection
    echo: list[Any] = field(default_factory=list)  # sonokit.echo.predict.EchoModel
    classifiers: list[Any] = field(default_factory=list)  # sonokit.predict.LoadedRun
    quality: Any = None
    cascade: Any = None
    errors: dict[str, str] = field(default_factory=dict)  # run folder -> why it could not be loaded
    _calibration: dict[tuple[str, float], Calibration | str] = field(default_factory=dict, repr=False)
    _ef_q: dict[tuple[str, float], tuple[float | None, str]] = field(default_factory=dict, repr=False)
    _index: dict[str, Any] = field(default_factory=dict, repr=False)
    _applicability: dict[str, Any] = field(default_factory=dict, repr=False)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:400]


def load_models(selection: Selection, device: str = "auto") -> Models:
    """Load every selected run; a run that fails is recorded in `errors` and the others still load."""
    models = Models(selection)

    def attempt(key: str, fn):
        try:
            return fn()
        except (SonokitError, OSError, ValueError, RuntimeError, KeyError) as err:
            models.errors[key] = _one_line(err)
            log.warning("cannot load %s: %s", key, _one_line(err))
            return None

    echo_dirs = [d for d in (selection.ef, selection.lv) if d]
    if echo_dirs:
        from sonokit.echo.predict import load_echo_models

        for d in echo_dirs:
            loaded = attempt(d, lambda d=d: load_echo_models([d], device))
            if loaded:
                key = {"video": "video", "seg": "seg", "trace": "trace"}[loaded[0].role]
                models.echo.append(dataclasses.replace(loaded[0], key=key))
    for d in selection.classifiers:
        run = attempt(d, lambda d=d: _load_classifier(d, device))
        if run is not None:
            models.classifiers.append(run)
    if selection.quality:
        models.quality = attempt(selection.quality, lambda: _load_quality(selection.quality, device))
    if selection.av_detect and selection.av_calcification:
        from sonokit.av.cascade import Cascade

        models.cascade = attempt(
            selection.av_detect,
            lambda: Cascade(selection.av_detect, selection.av_calcification, device, applicability=True),
        )
    elif selection.av_detect or selection.av_calcification:
        models.errors[selection.av_detect or selection.av_calcification or ""] = (
            "the aortic-valve cascade needs both an av-detect and an av-calcification run"
        )
    return models


def _load_classifier(run_dir: str, device: str):
    from sonokit.core.run import load_run

    run = load_run(run_dir, device)
    if run.task.kind != "classification" or not run.task.classes:
        raise InputError(f"a {run.task.name!r} run is not an image classifier", run_dir)
    return run


def _load_quality(run_dir: str, device: str):
    import importlib

    from sonokit.core.run import load_run

    try:  # the quality task registers itself on import; older task registries do not list it
        importlib.import_module("sonokit.quality.task")
    except ImportError:
        pass
    run = load_run(run_dir, device)
    if not hasattr(run.task, "predict_arrays"):
        raise InputError(f"not a quality run (task {run.task.name!r})", run_dir)
    return run


# ---------------------------------------------------------------------------------------------- helpers


def _mask(image: np.ndarray | None, sector: Any) -> np.ndarray | None:
    """The image with everything outside the imaging region blanked; None when no region is known."""
    from sonokit.preprocess import apply_mask

    if image is None or sector is None:
        return None
    if tuple(image.shape[:2]) != tuple(sector.shape):
        return None
    return apply_mask(image, sector)


def _detect(frames: np.ndarray) -> Any:
    from sonokit.preprocess import detect_sector

    try:
        return detect_sector(frames)
    except SonokitError:
        return None


def _thumb(image: np.ndarray, side: int = _THUMB) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def unletterbox(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo sonokit.data.datasets.letterbox on a (size, size) map: the map over the original (H, W) image."""
    import cv2

    size = heat.shape[0]
    h, w = shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (size - nh) // 2, (size - nw) // 2
    inner = np.ascontiguousarray(heat[top : top + nh, left : left + nw], dtype=np.float32)
    return cv2.resize(inner, (w, h), interpolation=cv2.INTER_LINEAR)


def _clean(message: str, path: Path, name: str) -> str:
    """The message with the temporary path (and folder) replaced by the upload's name."""
    message = message.replace(str(path), name).replace(str(path.parent) + "/", "")
    return message.replace(path.name, name)


# ---------------------------------------------------------------------------------------------- systems


def _quality(models: Models, image: np.ndarray, frame: int, options: Options) -> QualityVerdict:
    from sonokit.quality.gate import decide

    run = models.quality
    classes = list(run.task.classes)
    probs, ssim = run.task.predict_arrays(run.model, [_gray(image)], run.device)
    p = np.asarray(probs, dtype=float)
    decision = str(decide(p, classes, options.quality_threshold)[0])
    j = int(p[0].argmax())
    p_corrupt = 1.0 - float(p[0, classes.index("original")])
    return QualityVerdict(
        model=run.name,
        label=classes[j],
        probability=float(p[0, j]),
        p_corrupted=p_corrupt,
        ssim_est=float(np.asarray(ssim)[0]),
        decision=decision,
        probs=dict(zip(classes, p[0].tolist(), strict=True)),
        frame=frame,
    )


def _with_clip(m: Any, frames: int | None, period: int | None) -> Any:
    """The EF video model with the sidebar's clip sampling (a copy: the cached model keeps its own)."""
    if m.role != "video":
        return m
    opts = m.run.task.opts
    update = {k: v for k, v in (("frames", frames), ("period", period)) if v and v != getattr(opts, k)}
    if not update:
        return m
    task = copy.copy(m.run.task)
    task.opts = opts.model_copy(update=update)
    return dataclasses.replace(m, run=dataclasses.replace(m.run, task=task))


def ef_interval(models: Models, run_dir: Path, alpha: float) -> tuple[float | None, str]:
    """Half-width of the split-conformal EF interval from the run's validation videos, or None and why not."""
    import pandas as pd

    from sonokit.uncertainty import conformal_regression

    key = (str(run_dir), alpha)
    if key in models._ef_q:
        return models._ef_q[key]
    path = Path(run_dir) / "predictions_val.csv"
    out: tuple[float | None, str]
    if not path.is_file():
        out = (None, "no validation predictions in the run folder: no interval")
    else:
        df = pd.read_csv(path)
        if "frame" in df.columns:
            df = df[df["frame"].astype(str) == "all"]  # one row per video: the reported EF
        df = df.dropna(subset=["y_true", "y_pred"])
        q = conformal_regression(df["y_pred"], df["y_true"], alpha) if len(df) else math.inf
        if math.isfinite(q):
            out = (q, f"split-conformal {1 - alpha:.0%} interval from {len(df)} validation videos")
        else:
            out = (None, f"{len(df)} validation videos are too few for a {1 - alpha:.0%} conformal interval")
    models._ef_q[key] = out
    return out


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None


def _floats(text: Any) -> list[float]:
    if not isinstance(text, str) or not text:
        return []
    return [float(v) for v in text.split(";")]


def _echo(models: Models, path: Path, workdir: Path, options: Options) -> EchoResult:
    from sonokit.echo.predict import measure_study

    echo_models = [_with_clip(m, options.frames, options.period) for m in models.echo]
    # predict_study takes its headline EF from the first model
    echo_models.sort(key=lambda m: (m.role == "video") != (options.ef_headline == "video"))
    overlay = workdir / "overlay.webm"
    measured = measure_study(path, echo_models, options.thresholds, overlay=overlay)
    row = measured.row
    video = next((m for m in echo_models if m.role == "video"), None)
    lv = next((m for m in echo_models if m.role != "video"), None)
    res = EchoResult(
        models=[m.run.name for m in echo_models],
        ef=float(row["ef"]),
        ef_source=str(row["ef_source"]),
        heart_class=str(row["class"]),
        thresholds=options.thresholds,
        volume_unit=str(row.get("volume_unit", "")),
        fps=_positive(row.get("fps")),
        n_frames=int(row["n_frames"]),
        row=row,
        flags=str(row.get("flags", "")),
        not_applicable=[m.run.name for m in echo_models if row.get(f"applicable_{m.key}") is False],
    )
    if overlay.is_file():
        res.overlay_webm = overlay.read_bytes()
    if video is not None:
        k = video.key
        res.ef_video = float(row[f"ef_{k}"])
        res.ef_video_sd = float(row.get(f"ef_{k}_sd", math.nan))
        res.ef_video_beats = float(row.get(f"ef_{k}_beats", math.nan))
        q, res.interval_note = ef_interval(models, video.run.run_dir, options.alpha)
        if video.run is not next(m.run for m in models.echo if m.role == "video"):
            res.interval_note += " (calibrated with the model's own clip sampling, not the sidebar's)"
        if q is not None and math.isfinite(res.ef_video):
            res.interval = (res.ef_video - q, res.ef_video + q)
            res.interval_level = 1.0 - options.alpha
    if lv is not None:
        k = lv.key
        res.ef_lv = float(row[f"ef_{k}"])
        res.edv, res.esv = float(row[f"edv_{k}"]), float(row[f"esv_{k}"])
        ed, es = _floats(row.get(f"ed_frames_{k}")), _floats(row.get(f"es_frames_{k}"))
        efs = _floats(row.get(f"beat_efs_{k}"))
        if row.get(f"beat_source_{k}") == "beats":
            res.beats = [
                {"beat": i + 1, "ed": int(a), "es": int(b), "ef": e}
                for i, (a, b, e) in enumerate(zip(ed, es, efs, strict=False))
            ]
        lvr = measured.lv.get(k)  # None when the LV model failed on this cine (its flags say why)
        if lvr is not None:
            ms = lvr.spacing_mm
            if ms is not None:
                res.curve, res.curve_label = lvr.area * ms[0] * ms[1] / 100.0, "LV area (cm²)"
            else:
                res.curve, res.curve_label = lvr.area.astype(float), "LV area (model pixels²)"
            res.ed, res.es = [b.ed for b in lvr.beats], [b.es for b in lvr.beats]
            for b, v_ed, v_es in zip(res.beats, lvr.edv, lvr.esv, strict=False):
                b["edv"], b["esv"] = v_ed, v_es
    return res


def _calibration(models: Models, run: Any, alpha: float) -> Calibration | str:
    """Temperature, LAC conformal sets and the abstention threshold from the run's predictions_val.csv."""
    import pandas as pd

    from sonokit.uncertainty import (
        apply_temperature,
        confidence_threshold,
        conformal_classification,
        fit_calibration,
        probs_to_logits,
    )

    key = (str(run.run_dir), alpha)
    if key in models._calibration:
        return models._calibration[key]
    path = Path(run.run_dir) / "predictions_val.csv"
    classes = list(run.task.classes)
    cols = [f"p_{c}" for c in classes]
    result: Calibration | str
    if not path.is_file():
        result = "no validation predictions in the run folder: no conformal set or abstention"
    else:
        df = pd.read_csv(path, dtype={"y_true": str, "frame": str}, keep_default_na=False)
        if "frame" in df.columns:
            df = df[df["frame"] != "all"]
        df = df[df["y_true"].isin(classes)]
        if len(df) < 2 or not set(cols) <= set(df.columns):
            result = f"{len(df)} labelled validation items: too few to calibrate"
        else:
            y = df["y_true"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
            logits = probs_to_logits(df[cols].to_numpy(float))
            fit = fit_calibration(logits, y)  # T = 1 when the fitted T made validation ECE worse
            cal = apply_temperature(logits, fit.temperature)
            result = Calibration(
                temperature=float(fit.temperature),
                conformal=conformal_classification(cal, y, alpha, method="lac"),
                threshold=confidence_threshold(cal.max(axis=1), 0.8),
                n_val=int(len(y)),
                note="" if fit.used else fit.note,
            )
    models._calibration[key] = result
    return result


def _per_run(cache: dict[str, Any], run: Any, build: Callable[[Any], Any], unavailable: str) -> Any:
    """`build(run)` once per run folder, kept in `cache`; on failure the one-line reason, prefixed."""
    key = str(run.run_dir)
    if key not in cache:
        try:
            cache[key] = build(run)
        except (SonokitError, OSError, ValueError) as err:
            cache[key] = f"{unavailable}: {_one_line(err)}"
    return cache[key]


def _similar_index(models: Models, run: Any) -> Any:
    from sonokit.retrieval.runs import load_or_build_index

    return _per_run(models._index, run, load_or_build_index, "similar cases unavailable")


def _applicability(models: Models, run: Any) -> Any:
    """The run's applicability scorer (fitted now and saved in the run folder when missing), or why there is none."""
    from sonokit.uncertainty.applicability import load_or_fit

    return _per_run(models._applicability, run, load_or_fit, "no applicability check")


def _read_masked(path: str, frame: str | int) -> np.ndarray | None:
    from sonokit.data.frames import read_image

    try:
        image = np.asarray(read_image(path, int(frame) if frame not in ("", None) else 0))
    except (SonokitError, OSError, ValueError):
        return None
    masked = _mask(image, _detect(image))
    return _thumb(masked) if masked is not None else None


def _classify(models: Models, run: Any, path: Path, original: dict[int, np.ndarray], sector: Any,
              options: Options) -> ClassResult:  # fmt: skip
    from sonokit.retrieval.runs import infer_with_embeddings
    from sonokit.uncertainty import abstain_flags, apply_temperature, probs_to_logits

    task = run.task
    classes = list(task.classes)
    items, bad = task.predict_items([path])
    if bad:
        raise InputError(str(bad[0][1]).split(": ", 1)[-1], path)
    items = items.reset_index(drop=True)
    out = infer_with_embeddings(run, items, desc="app")
    preds = task.predictions(out.collected, out.items)
    cols = [f"p_{c}" for c in classes]
    video = preds[preds["frame"].astype(str) == "all"] if "frame" in preds.columns else preds[:0]
    if len(video):
        probs = video[cols].to_numpy(float)[0]
        n = int((preds["frame"].astype(str) != "all").sum())
        unit = f"video ({n} frames, {task.opts.video_rule} rule)"
    else:
        probs = preds[cols].to_numpy(float)[0]
        unit = "frame" if len(out.items) == 1 and "frame" in out.items.columns else "image"
    pred = int(np.argmax(probs))
    # the frame shown: the one most sure of the answer
    i = int(np.argmax(out.probs[:, pred]))
    frame = int(out.items["frame"].iloc[i]) if "frame" in out.items.columns else None
    order = np.argsort(-probs, kind="stable")[: max(1, options.top_k)]
    res = ClassResult(
        model=run.name,
        task=task.name,
        classes=classes,
        probs=probs,
        prediction=classes[pred],
        top_k=[(classes[j], float(probs[j])) for j in order],
        unit=unit,
        frame=frame,
    )

    check = _applicability(models, run)
    if isinstance(check, str):
        res.notes.append(check)
    else:  # a cine is applicable when most of its frames are
        from sonokit.uncertainty.applicability import score_set

        res.applicable, res.applicability = score_set(check, out.embeddings)
        res.applicability_rule = check.rule()
        if not res.applicable:
            return res  # no set, no Grad-CAM, no similar cases: the model has nothing to say about this file

    cal = _calibration(models, run, options.alpha)
    if isinstance(cal, str):
        res.notes.append(cal)
    else:
        scaled = apply_temperature(probs_to_logits(probs[None]), cal.temperature)
        members = cal.conformal.predict_sets(scaled)[0]
        res.conformal_set = [c for c, m in zip(classes, members, strict=True) if m]
        conf = float(scaled.max())
        res.abstain = bool(abstain_flags(np.array([conf]), cal.threshold, np.array([members.sum()]))[0])
        res.temperature = cal.temperature
        if cal.note:
            res.notes.append(cal.note)
        reasons = []
        if conf < cal.threshold:
            reasons.append(f"confidence {conf:.2f} < {cal.threshold:.2f}")
        if members.sum() != 1:
            reasons.append(f"{int(members.sum())} classes in the {1 - options.alpha:.0%} conformal set")
        res.abstain_reason = "; ".join(reasons)

    if options.gradcam:
        try:
            res.gradcam = _gradcam(run, out.dataset, i, pred, path, frame, original, sector)
            if res.gradcam is None:
                res.notes.append("Grad-CAM not shown: no ultrasound region found to mask the image")
        except _SYSTEM_ERRORS as err:
            res.notes.append(f"Grad-CAM failed: {_clean(_one_line(err), path, path.name)}")

    if options.similar and options.n_similar > 0:
        index = _similar_index(models, run)
        if isinstance(index, str):
            res.notes.append(index)
        else:
            _similar(res, index, out.embeddings[i : i + 1], options.n_similar, path, frame)
    return res


def _gradcam(run: Any, dataset: Any, i: int, target: int, path: Path, frame: int | None,
             original: dict[int, np.ndarray], sector: Any) -> np.ndarray | None:  # fmt: skip
    """Grad-CAM of item i for the predicted class, mapped back onto the masked original frame (None: no mask)."""
    from sonokit.data.frames import read_image
    from sonokit.explain import gradcam, overlay_heatmap
    from sonokit.tasks.base import normalise_batch

    image = original.get(frame or 0)
    if image is None:
        image = np.asarray(read_image(path, frame or 0))
    masked = _mask(image, sector)
    if masked is None:
        return None
    x, _ = dataset.base[i]
    mean, std = run.cfg.channel_stats()
    heat = gradcam(run.model, normalise_batch(x.unsqueeze(0).to(run.device), mean, std), target=target)
    return overlay_heatmap(masked, unletterbox(heat, masked.shape[:2]) * (sector.mask > 0))


def _similar(res: ClassResult, index: Any, embedding: np.ndarray, k: int, path: Path,
             frame: int | None) -> None:  # fmt: skip
    """The k nearest training cases (one per training file) and their vote; the upload itself is marked when it
    is one of them."""
    from sonokit.retrieval.runs import in_training_set

    idx, dist = index.query_distinct(embedding, k)
    hashes: dict[str, str] = {}
    vote = index.knn_vote(embedding, k, len(res.classes))[0]
    res.knn_vote = res.classes[int(np.argmax(vote))]
    for j, d in zip(idx[0], dist[0], strict=True):
        if j < 0:
            continue
        lab = int(index.labels[j])
        res.similar.append(
            SimilarCase(
                label=res.classes[lab] if 0 <= lab < len(res.classes) else "?",
                distance=float(d),
                image=_read_masked(index.paths[j], index.frames[j]),
                in_training_set=in_training_set(
                    path,
                    "" if frame is None else str(frame),
                    index.paths[j],
                    index.frames[j],
                    float(d),
                    hashes,
                ),
            )
        )


def _av(models: Models, path: Path, n_frames: int, sector: Any, options: Options) -> AVResult:
    from sonokit.av.cascade import NOT_APPLICABLE, OK
    from sonokit.av.plots import draw_boxes
    from sonokit.data.frames import read_gray, sample_indices

    cascade = models.cascade
    if options.av_threshold is not None:  # a copy: the cached cascade keeps the run's own threshold
        cascade = copy.copy(cascade)
        cascade.score_threshold = float(options.av_threshold)
    frames = [int(i) for i in sample_indices(n_frames, 1, _AV_FRAMES)] if n_frames > 1 else [0]
    images = [read_gray(path, i) for i in frames]
    results = cascade.run(images)
    # the best-scoring frame among those the detector's training data covers (all, without a check)
    best = int(np.argmax([r.score if r.status != NOT_APPLICABLE else -np.inf for r in results]))
    r, image = results[best], images[best]
    out = AVResult(
        status=r.status,
        score=float(r.score),
        frame=frames[best],
        frames_checked=len(frames),
        model=f"{cascade.det.name} + {cascade.cls.name}",
    )
    masked = _mask(image, sector)
    if r.status == OK:
        out.box = tuple(float(v) for v in r.box)
        out.p_calcified = float(r.p_calcified)
        out.calcified = "yes" if r.p_calcified >= 0.5 else "no"
        if masked is not None:
            out.boxed = draw_boxes(masked, None, r.box, r.score)
            x1, y1, x2, y2 = r.window
            out.crop = masked[y1:y2, x1:x2]
    elif masked is not None:
        import cv2

        out.boxed = cv2.cvtColor(masked, cv2.COLOR_GRAY2RGB)
    return out


# ---------------------------------------------------------------------------------------------- one file


def _header(info: dict[str, Any]) -> dict[str, Any]:
    """The de-identified description, minus the temporary path; DICOM regions summarised."""
    out = {k: v for k, v in info.items() if k not in _HIDDEN_HEADER and v not in (None, "", [])}
    regions = info.get("regions") or []
    if regions:
        out["regions"] = ", ".join(str(r.get("spatial_format_name") or "?") for r in regions)
    if isinstance(out.get("spacing_mm"), (list, tuple)):
        out["spacing_mm"] = " x ".join(f"{v:.4f}" for v in out["spacing_mm"])
    if isinstance(out.get("fps"), float):
        out["fps"] = round(out["fps"], 2)
    return out


def analyse_file(
    path: str | Path,
    name: str,
    models: Models,
    options: Options,
    workdir: str | Path,
    checkpoint: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run every loaded system on one readable file (see the module docstring); never raises for bad input.

    Whatever `checkpoint` raises (a stopped session) is not caught: the analysis ends there.
    """
    import time

    from sonokit.io import describe, open_cine

    step = checkpoint or (lambda stage: None)
    t0 = time.perf_counter()
    path, workdir = Path(path), Path(workdir)
    result = StudyResult(name=name)

    def fail(system: str, err: BaseException) -> None:
        result.errors[system] = _clean(_one_line(err), path, name)
        if not isinstance(err, SonokitError):
            log.warning("%s failed on an upload: %s", system, type(err).__name__, exc_info=True)

    step("reading")
    try:
        info = describe(path)
        result.kind = str(info.get("format") or "")
        result.header = _header(info)
        n_frames = int(info["frames"])
        if n_frames < 1:
            raise InputError("no frames", path)
        with open_cine(path) as cine:
            picks = np.unique(
                np.linspace(0, n_frames - 1, min(n_frames, _MAX_SECTOR_FRAMES)).round().astype(int)
            )
            original = {int(i): np.asarray(cine.frame(int(i))) for i in picks}
    except (*_SYSTEM_ERRORS, MemoryError) as err:
        result.error = _clean(_one_line(err), path, name)
        result.seconds = time.perf_counter() - t0
        return result
    middle = int(picks[len(picks) // 2])
    sector = _detect(np.stack([original[int(i)] for i in picks]))
    result.preview = _mask(original[middle], sector)
    result.masked = result.preview is not None
    if sector is None:
        result.mask_note = (
            "no ultrasound region found: images of this file are not shown (they may carry burned-in text)"
        )

    if models.quality is not None:
        step("quality")
        try:
            result.quality = _quality(models, original[middle], middle, options)
        except _SYSTEM_ERRORS as err:
            fail("quality", err)
    if models.echo:
        if n_frames < 3:
            result.notes["echo"] = f"EF needs a cine; this {result.kind or 'file'} has {n_frames} frame(s)"
        else:
            step("echo")
            try:
                result.echo = _echo(models, path, workdir, options)
            except _SYSTEM_ERRORS as err:
                fail("echo", err)
    for run in models.classifiers:
        step(run.name)
        try:
            result.classifications.append(_classify(models, run, path, original, sector, options))
        except _SYSTEM_ERRORS as err:
            fail(f"classification: {run.name}", err)
    if models.cascade is not None:
        step("aortic valve")
        try:
            result.av = _av(models, path, n_frames, sector, options)
        except _SYSTEM_ERRORS as err:
            fail("aortic valve", err)
    result.seconds = time.perf_counter() - t0
    return result


def safe_suffix(name: str) -> str:
    """The upload's extension when sonokit reads that kind of file, else none (DICOM is found by its marker)."""
    from sonokit.io import SUPPORTED_EXTENSIONS

    suffix = Path(name).suffix.lower()
    return suffix if suffix in SUPPORTED_EXTENSIONS else ""


def analyse_upload(
    name: str,
    data: bytes,
    models: Models,
    options: Options,
    checkpoint: Callable[[str], None] | None = None,
) -> StudyResult:
    """Write the upload to a private temporary folder (mode 0700), analyse it, delete the folder (also when
    `checkpoint` stops the analysis)."""
    workdir = Path(tempfile.mkdtemp(prefix="sonokit-app-"))
    try:
        path = workdir / f"upload{safe_suffix(name)}"
        path.write_bytes(data)
        if not data:
            return StudyResult(name=name, error=f"{name}: empty file")
        from sonokit.data.cache import transient

        with transient():  # an upload's pixels never reach the preprocessed cache on disk
            return analyse_file(path, name, models, options, workdir, checkpoint)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
