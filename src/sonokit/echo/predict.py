"""One study in, LV function out: `sonokit ef predict` without FileList.csv or VolumeTracings.csv.

A cine (DICOM, AVI, MP4) is decoded, brought to each model's input size (sector crop + pad + resize unless it
already has that size; see sonokit.echo.frames) and run through every given model:
    ef (video)      EF averaged over clips every `clip_stride` frames (at the cine's own frame rate, as in
                    training); with an LV model also over the clips starting at each detected ED that fit in the
                    cine (beat by beat, `ef_video_beats`);
    lv-seg / trace  the LV on every frame -> area curve -> ED (peaks) and ES (troughs) per beat -> Simpson EDV,
                    ESV and EF per beat. Volumes are in mL when the file gives the pixel spacing (the model pixel's
                    spacing is the original's times the crop transform's pixel size), else in pixels**3.
The first run named gives the headline `ef`; every run also gets its own columns (ef_video, ef_seg, ...).
A file that cannot be read gets a row with only `path` and `error`, and the others are still measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sonokit.core.loop import forward_batch
from sonokit.echo.beats import Beat, find_beats, finite_mean, join_values
from sonokit.echo.frames import LoadedStudy, PreparedCine, load_study, to_channels
from sonokit.errors import InputError, SonokitError
from sonokit.predict.result import PredictionFile
from sonokit.tasks.base import normalise_batch
from sonokit.utils import get_logger

log = get_logger(__name__)


@dataclass
class EchoModel:
    run: Any  # sonokit.core.run.LoadedRun
    role: str  # "video" | "seg" | "trace"
    key: str  # column suffix
    gray: bool = False  # the video model also takes one-channel grey clips (prepare_for_prediction)
    share_clips: bool = True  # overlapping clips share the work on their common frames where the model can
    applicability: Any = None  # sonokit.uncertainty.applicability.ApplicabilityScorer, when the run has one
    tap: Any = None  # sonokit.models.embedding.FeatureTap on the model, when it has a check


def load_echo_models(
    run_dirs: list[str | Path], device: str = "auto", applicability: bool = True
) -> list[EchoModel]:
    """Load each run folder; refuse runs of other tasks (they cannot measure an LV).

    `applicability`: load each run's check of whether a cine looks like its training data (RUN/applicability/,
    fitted now from the run's own data when missing); a run whose data is gone answers without one (a warning)."""
    from sonokit.core.run import load_run
    from sonokit.models.embedding import FeatureTap
    from sonokit.systems import ECHO
    from sonokit.uncertainty.applicability import load_check

    if not run_dirs:
        raise InputError("no model given: pass --run RUN_DIR (an ef, lv-seg or lv-trace run), repeatable")
    models: list[EchoModel] = []
    for d in run_dirs:
        run = load_run(d, device)
        found = ECHO.role_of(run.task.name)
        if found is None:
            raise InputError(f"a {run.task.name!r} run; ef predict takes {', '.join(ECHO.tasks)} runs", d)
        role = found.name
        same = sum(m.role == role for m in models)
        model = EchoModel(run, role, role if same == 0 else f"{role}{same + 1}")
        model.applicability = load_check(run) if applicability else None
        prepare_for_prediction(model)
        if model.applicability is not None:
            model.tap = FeatureTap(run.model)
        models.append(model)
    return models


def _applicability(model: EchoModel, n_items: int | None = None) -> tuple[bool | None, float]:
    """This thread's features of the model's last pass over a cine (its first `n_items` clips or frames), judged
    as one set: (applicable or None without a check, applicability)."""
    from sonokit.uncertainty.applicability import score_set

    if model.tap is None:
        return None, math.nan
    feats = model.tap.take()[:n_items]
    if not len(feats) or model.applicability is None:
        return None, math.nan
    return score_set(model.applicability, feats)


def prepare_for_prediction(model: EchoModel) -> EchoModel:
    """Make a loaded model cheaper to run, with the same outputs to float rounding (bench_ef_predict.py):
    BatchNorm folded into the convolutions; a video model in the channels-last layout (oneDNN's fast 3D
    convolutions) and, when its three input channels are one grey cine with one mean and std, fed that grey
    channel once. The model is changed in place and is for prediction only from then on."""
    from sonokit.core.loop import channels_last_model
    from sonokit.models.inference import fold_batchnorm

    net = model.run.model.eval()
    fold_batchnorm(net)
    if model.role == "video":
        channels_last_model(net)
        mean, std = model.run.cfg.channel_stats()
        if len(set(mean)) == 1 and len(set(std)) == 1 and hasattr(net, "accept_gray_input"):
            net.accept_gray_input()
            model.gray = True
    return model


# ---------------------------------------------------------------------------------------------- inference


def _frame_batches(model: EchoModel, cine: PreparedCine, batch_size: int):
    """The cine's frames as the LV task's batches ({"x": (B, C, S, S) in [0, 1]}; the task normalises them)."""
    channels = model.run.cfg.channels
    for s in range(0, len(cine.frames), batch_size):
        chunk = to_channels(cine.frames[s : s + batch_size], channels)  # (B, S, S, C)
        yield {"x": torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2))).float().div_(255.0)}


# An LV smaller than this share of the model's image is no LV (a few stray pixels on a foreign or very poor cine).
MIN_LV_FRACTION = 0.005
# Simpson EF outside this range is physiologically implausible; the row keeps the value and flags it.
PLAUSIBLE_EF = (5.0, 90.0)
# Consecutive frames of a cine overlap almost entirely (Dice > 0.9 at 25-90 fps); a mask that jumps more than this
# between frames is following noise, not the LV.
MIN_FRAME_CONSISTENCY = 0.8


@dataclass
class LVResult:
    """An LV model's measurements on every frame of one cine (model pixels)."""

    area: np.ndarray  # (F,) pixels**2
    masks: np.ndarray | None = None  # (F, S, S) bool (lv-seg)
    lines: np.ndarray | None = None  # (F, 21, 4) (lv-trace)
    beats: list[Beat] = field(default_factory=list)
    beat_source: str = "beats"
    edv: list[float] = field(default_factory=list)
    esv: list[float] = field(default_factory=list)
    efs: list[float] = field(default_factory=list)
    spacing_mm: tuple[float, float] | None = None  # of a model pixel, when the file gives its spacing
    flags: list[str] = field(default_factory=list)  # why (part of) the answer should not be trusted
    consistency: float = (
        math.nan
    )  # mean Dice of consecutive frames' masks (lv-seg): how steady the outline is
    beat_interval_cv: float = (
        math.nan
    )  # spread of ED-to-ED intervals / their mean (3+ beats): rhythm regularity

    def outline(self, i: int) -> np.ndarray | None:
        """The LV outline of frame i as (k, 2) x, y model pixels (largest region of the mask, or the tracing)."""
        if self.lines is not None:
            from sonokit.clinical import tracing_polygon

            return tracing_polygon(self.lines[i])
        import cv2

        m = self.masks[i].astype(np.uint8)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if not contours:
            return None
        return max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float64)


@torch.inference_mode()
def measure_lv(model: EchoModel, cine: PreparedCine, batch_size: int = 32) -> LVResult:
    """Outline the LV on every frame, find the beats, and measure EDV, ESV and EF of each.

    Never fails on a readable cine: a beat whose outline cannot be measured gets NaN volumes, and every reason to
    doubt the answer (no LV found, a flat area curve, unmeasurable beats, implausible EF) is listed in `flags`."""
    from sonokit.clinical import ejection_fraction, volume_from_mask, volume_from_tracing
    from sonokit.echo.tracing import tracing_area

    net = model.run.model
    size = model.run.cfg.size
    run = model.run
    outs = [
        forward_batch(run.task, net, batch, run.device, channels_last=run.cfg.channels_last)[1].float().cpu()
        for batch in _frame_batches(model, cine, batch_size)
    ]
    if model.role == "seg":
        masks = (torch.cat(outs)[:, 0] > 0).numpy()
        res = LVResult(area=masks.reshape(len(masks), -1).sum(axis=1).astype(float), masks=masks)
    else:
        lines = torch.cat(outs).numpy().reshape(-1, 21, 4).astype(np.float64) * size
        res = LVResult(area=np.array([tracing_area(t) for t in lines]), lines=lines)
    res.spacing_mm = cine.model_spacing_mm
    largest = float(np.nanmax(res.area, initial=0.0)) / float(size * size)
    if largest < MIN_LV_FRACTION:
        res.flags.append(f"no LV found (largest outline {100 * largest:.2f}% of the image)")
    elif res.masks is not None and len(res.masks) > 1:
        res.consistency = frame_consistency(res.masks)
        if res.consistency < MIN_FRAME_CONSISTENCY:
            res.flags.append(
                f"LV outline unsteady between frames (consecutive-frame Dice {res.consistency:.2f})"
            )
    res.beats = find_beats(res.area, cine.fps) if np.ptp(res.area) > 0 else []
    if not res.beats:  # less than one beat visible: the largest LV, then the smallest after it
        res.flags.append("no heartbeat in the LV area curve: ED/ES are its largest and smallest frames")
        ed = int(np.argmax(res.area))
        after = res.area[ed:]
        es = ed + int(np.argmin(after)) if len(after) > 1 else int(np.argmin(res.area))
        res.beats, res.beat_source = [Beat(ed=ed, es=es)], "extremes"
    if res.beat_source == "beats" and len(res.beats) >= 3:
        intervals = np.diff([b.ed for b in res.beats])
        res.beat_interval_cv = float(intervals.std() / intervals.mean())
    failed: dict[str, int] = {}
    for b in res.beats:
        try:
            if res.lines is not None:
                edv, esv = (volume_from_tracing(res.lines[f], res.spacing_mm) for f in (b.ed, b.es))
            else:
                edv, esv = (volume_from_mask(res.masks[f], res.spacing_mm) for f in (b.ed, b.es))
        except InputError as err:  # an outline Simpson's method cannot measure (a few pixels, no long axis)
            failed[str(err)] = failed.get(str(err), 0) + 1
            edv = esv = math.nan
        if edv == 0 or esv == 0:  # an empty outline at ED or ES: nothing measured, not a volume of zero
            failed["no LV outline at ED or ES"] = failed.get("no LV outline at ED or ES", 0) + 1
            edv = esv = math.nan
        ok = math.isfinite(edv) and math.isfinite(esv) and b.ed != b.es
        res.edv.append(float(edv))
        res.esv.append(float(esv))
        res.efs.append(ejection_fraction(edv, esv) if ok else math.nan)
    for reason, n in failed.items():
        res.flags.append(f"{reason} ({n} of {len(res.beats)} beats not measured)")
    low, high = PLAUSIBLE_EF
    implausible = [e for e in res.efs if math.isfinite(e) and not low <= e <= high]
    if implausible:
        res.flags.append(
            f"implausible EF in {len(implausible)} of {len(res.beats)} beats (outside {low:g}-{high:g}%)"
        )
    return res


def frame_consistency(masks: np.ndarray) -> float:
    """Mean Dice between each frame's mask and the next, over pairs where either has an outline."""
    a, b = masks[:-1].reshape(len(masks) - 1, -1), masks[1:].reshape(len(masks) - 1, -1)
    sizes = a.sum(axis=1) + b.sum(axis=1)
    keep = sizes > 0
    if not keep.any():
        return math.nan
    overlap = np.logical_and(a[keep], b[keep]).sum(axis=1)
    return float(np.mean(2.0 * overlap / sizes[keep]))


def clip_batches(n: int, batch_size: int) -> list[slice]:
    """Split n clips into the fewest batches of at most `batch_size`, with sizes as even as possible (9 clips at 8:
    5 + 4, not 8 + 1), so no batch but a lone clip's holds one clip: PyTorch runs a one-clip 3D convolution with
    its slow reference kernel on the CPU, not oneDNN's (6x the time per clip)."""
    n_batches = max(1, math.ceil(n / max(1, batch_size)))
    edges = np.linspace(0, n, n_batches + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def clip_batch(
    frames: np.ndarray, starts: np.ndarray, n_frames: int, period: int, pad: str, channels: int
) -> torch.Tensor:
    """The clips starting at `starts` as one (B, C, T, H, W) float tensor in [0, 1], channels-last (the layout the
    prepared video models run fastest in): `take_clip` and `clip_tensor` for every clip, with one gather and one
    conversion instead of one per clip."""
    idx = np.asarray(starts, dtype=np.int64)[:, None] + period * np.arange(n_frames, dtype=np.int64)
    if pad == "repeat":
        clips = frames[idx % len(frames)]
    else:  # black frames past the end (EchoNet's "zero")
        inside = idx < len(frames)
        clips = frames[np.minimum(idx, len(frames) - 1)]
        clips[~inside] = 0
    b, t, h, w = clips.shape[:4]
    x = to_channels(clips.reshape(b * t, *clips.shape[2:]), channels)  # (B*T, H, W, C) uint8
    # (B, T, H, W, C) seen as (B, C, T, H, W): the channels-last-3d strides, without a copy
    return torch.from_numpy(np.ascontiguousarray(x)).view(b, t, h, w, channels).permute(0, 4, 1, 2, 3)


@torch.inference_mode()
def video_ef(
    model: EchoModel, cine: PreparedCine, beats: list[Beat] | None = None, batch_size: int = 8
) -> dict:
    """EF of the video model: mean over the all-clips protocol, and over clips starting at each ED when known."""
    from sonokit.echo.data import clip_starts

    task, cfg = model.run.task, model.run.cfg
    o = task.opts
    frames = cine.frames
    channels = 1 if model.gray and frames.ndim == 3 else cfg.channels
    mean, std = (v[:channels] for v in cfg.channel_stats())
    starts = clip_starts(len(frames), o.frames, o.period, o.clip_stride)
    extent = (o.frames - 1) * o.period + 1
    beat_starts = [b.ed for b in beats or [] if b.ed + extent <= len(frames)]  # whole clips only
    all_starts = np.concatenate([starts, np.asarray(beat_starts, dtype=np.int64)])
    device, net = model.run.device, model.run.model
    # the all-clips protocol's clips overlap (a clip every clip_stride frames, each spanning extent frames): a
    # model that can (TwoStreamEF.forward_windows) shares the work on their common frames, batch by batch
    windows = (
        model.share_clips
        and getattr(net, "shares_clip_frames", lambda: False)()
        and o.clip_stride % o.period == 0
        and o.frames >= 4
        and len(starts) > 1
        and starts[-1] + extent <= len(frames)
    )

    def tensor(chosen: np.ndarray, n_frames: int) -> torch.Tensor:
        x = clip_batch(frames, chosen, n_frames, o.period, o.temporal_pad, channels)
        x = normalise_batch(x.to(device).float().div_(255.0), mean, std)
        return x.contiguous(memory_format=torch.channels_last_3d)  # a no-op on the CPU

    preds = []
    for part in clip_batches(len(all_starts), batch_size):
        chosen = all_starts[part]
        if windows and part.stop <= len(starts) and len(chosen) > 1:
            offsets = ((chosen - chosen[0]) // o.period).tolist()
            seq = tensor(chosen[:1], offsets[-1] + o.frames)
            preds.append(net.forward_windows(seq, offsets, o.frames).float().cpu().numpy()[:, 0])
            continue
        lone = len(chosen) == 1 and torch.device(device).type == "cpu"
        if lone:  # twice, see clip_batches
            chosen = np.repeat(chosen, 2)
        out = net(tensor(chosen, o.frames)).float().cpu().numpy()[:, 0]
        preds.append(out[:1] if lone else out)
    p = np.concatenate(preds)
    clips, per_beat = p[: len(starts)], p[len(starts) :]
    return {
        "ef": float(clips.mean()),
        "sd": float(clips.std()),
        "clips": int(len(clips)),
        "beats": float(per_beat.mean()) if len(per_beat) else math.nan,
    }


# ---------------------------------------------------------------------------------------------- one study


@dataclass
class StudyMeasurement:
    """One cine's CSV row and the LV models' per-frame results behind it (the app draws their area curves)."""

    row: dict[str, Any]
    lv: dict[str, LVResult]  # model key -> result, for the LV models that ran


# What one model may raise on a readable cine: its answer becomes NaN with the reason, the row stays.
_MODEL_ERRORS = (SonokitError, ValueError, RuntimeError)


def predict_study(
    path: str | Path,
    models: list[EchoModel],
    thresholds: str = "default",
    overlay: str | Path | None = None,
    batch_size: int = 16,
    study: LoadedStudy | None = None,
) -> dict[str, Any]:
    """Every measurement of one cine as one CSV row (see the module docstring); raises InputError if unreadable."""
    return measure_study(path, models, thresholds, overlay, batch_size, study).row


def measure_study(
    path: str | Path,
    models: list[EchoModel],
    thresholds: str = "default",
    overlay: str | Path | None = None,
    batch_size: int = 16,
    study: LoadedStudy | None = None,
) -> StudyMeasurement:
    """`predict_study` with the LV results kept. Raises InputError only when the cine cannot be read: a model that
    fails on it gives NaN values and its reason in `flags_<model>` and `flags`, and the other models still answer
    (the headline `ef` then comes from the first model that gave one; `ef_source` names it).

    `study`: the cine already loaded (by `load_study`); else it is loaded here.
    """
    from sonokit.clinical import get_thresholds

    preset = get_thresholds(thresholds)
    if study is None:
        study = load_study(path, {m.run.cfg.size for m in models}, keep_original=overlay is not None)
    path, fps, spacing = study.path, study.fps, study.spacing

    def at(size: int) -> PreparedCine:
        return study.prepared[size]

    def cls(ef: float) -> str:
        return preset.classify(ef) if math.isfinite(ef) else ""

    row: dict[str, Any] = {
        "path": str(path), "n_frames": study.n_frames, "fps": round(fps, 3) if fps else math.nan,
        "spacing_mm": f"{spacing[0]:.5f}x{spacing[1]:.5f}" if spacing else "",
        "volume_unit": "mL" if spacing else "px^3",
    }  # fmt: skip
    flags: dict[str, list[str]] = {m.key: [] for m in models}
    applies: dict[str, tuple[bool | None, float]] = {}
    lv: dict[str, LVResult] = {}
    for m in models:
        if m.role in ("seg", "trace"):
            try:
                lv[m.key] = measure_lv(m, at(m.run.cfg.size), batch_size)
                flags[m.key] += lv[m.key].flags
                applies[m.key] = _applicability(m)
            except _MODEL_ERRORS as err:
                flags[m.key].append(f"failed: {str(err).splitlines()[0]}")
                _applicability(m)  # drop the features of the failed pass
    first_lv = next(((m, lv[m.key]) for m in models if m.key in lv), None)
    per_model: dict[str, Any] = {}
    efs: dict[str, float] = {}
    for m in models:
        k = m.key
        if m.role == "video":
            beats = first_lv[1].beats if first_lv and first_lv[1].beat_source == "beats" else None
            try:
                v = video_ef(m, at(m.run.cfg.size), beats, max(1, batch_size // 2))
                applies[k] = _applicability(m, v["clips"])
            except _MODEL_ERRORS as err:
                flags[k].append(f"failed: {str(err).splitlines()[0]}")
                _applicability(m)  # drop the features of the failed pass
                v = {"ef": math.nan, "sd": math.nan, "clips": 0, "beats": math.nan}
            efs[k] = v["ef"]
            per_model.update({
                f"ef_{k}": v["ef"], f"class_{k}": cls(v["ef"]), f"ef_{k}_sd": v["sd"], f"ef_{k}_clips": v["clips"],
                f"ef_{k}_beats": v["beats"],
            })  # fmt: skip
        else:
            res = lv.get(k)
            ef = finite_mean(res.efs) if res else math.nan
            efs[k] = ef
            per_model.update({
                f"ef_{k}": ef, f"class_{k}": cls(ef),
                f"edv_{k}": finite_mean(res.edv) if res else math.nan, f"esv_{k}": finite_mean(res.esv) if res else math.nan,
                f"ed_frames_{k}": join_values([b.ed for b in res.beats]) if res else "",
                f"es_frames_{k}": join_values([b.es for b in res.beats]) if res else "",
                f"beat_efs_{k}": join_values(res.efs, "{:.2f}") if res else "",
                f"n_beats_{k}": len(res.beats) * (res.beat_source == "beats") if res else 0,
                f"beat_source_{k}": res.beat_source if res else "failed",
                f"consistency_{k}": res.consistency if res else math.nan,
                f"beat_interval_cv_{k}": res.beat_interval_cv if res else math.nan,
            })  # fmt: skip
        applicable, applicability = applies.get(k, (None, math.nan))
        per_model[f"applicable_{k}"] = "" if applicable is None else applicable
        per_model[f"applicability_{k}"] = applicability
        if applicable is False:
            flags[k].insert(0, f"not applicable: the cine does not look like this model's training data "
                               f"(applicability {applicability:.3f}; {m.applicability.rule()})")  # fmt: skip
        per_model[f"flags_{k}"] = "; ".join(flags[k])
    # the headline: the first model that measured and that the cine is applicable to; none when none is
    trusted = [
        m.key for m in models if math.isfinite(efs[m.key]) and applies.get(m.key, (None,))[0] is not False
    ]
    head = trusted[0] if trusted else ""
    ef = efs[head] if head else math.nan
    row.update({"ef": ef, "class": cls(ef), "ef_source": head})
    row["flags"] = "; ".join(f"{k}: {f}" for k, fs in flags.items() for f in fs)
    lv_head = next(
        (m.key for m in models if m.key in lv and applies.get(m.key, (None,))[0] is not False), None
    )
    for name in ("edv", "esv", "ed_frames", "es_frames", "beat_efs", "n_beats"):
        if lv_head is not None:
            row[name] = per_model[f"{name}_{lv_head}"]
        elif first_lv is not None:  # LV models ran, none applies: the columns stay, empty
            row[name] = math.nan if name in ("edv", "esv") else ""
    row.update(per_model)
    if overlay is not None:
        if study.original is None:
            study = load_study(path, list(study.prepared), keep_original=True, pane=study.pane)
        overlay_path = _write_overlay(Path(overlay), study.original, fps, first_lv, at, efs, study.prepared)
        row["overlay"] = str(overlay_path)
    return StudyMeasurement(row, lv)


def _write_overlay(path: Path, original, fps, first_lv, at, efs: dict[str, float], prepared: dict) -> Path:
    from sonokit.echo.overlay import write_overlay
    from sonokit.preprocess import apply_mask

    text = "  ".join(f"EF {k} {v:.1f}%" for k, v in efs.items() if math.isfinite(v))
    contours, curve, ed, es, label = None, None, (), (), "LV area"
    sector = next((c.sector for c in prepared.values() if c.sector is not None), None)
    if sector is not None:  # burned-in text (names, dates) outside the fan is not shown again
        original = apply_mask(original, sector)
    if first_lv is not None:
        m, res = first_lv
        transform = at(m.run.cfg.size).transform
        contours = []
        for i in range(len(original)):
            poly = res.outline(i)
            contours.append(transform.to_original(poly) if poly is not None else None)
        curve = res.area
        ed, es = [b.ed for b in res.beats], [b.es for b in res.beats]
        ms = res.spacing_mm
        if ms is not None:
            curve, label = res.area * ms[0] * ms[1] / 100.0, "LV area (cm^2)"
        else:
            label = "LV area (model pixels)"
        label += f"  ED red, ES blue  [{m.key}]"
    return write_overlay(
        path, original, fps, contours=contours, curve=curve, ed=ed, es=es, text=text, curve_label=label
    )


# ---------------------------------------------------------------------------------------------- many studies

_READ_ERRORS = (SonokitError, OSError, ValueError)


def _split_threads(workers: int):
    """Run `workers` studies at once with torch's intra-op threads divided among them, so one study decodes while
    another computes (bench_ef_predict.py on 2 cores: 0.206 -> 0.198 s per video). Returns torch's thread count
    before, and a setter each worker thread calls (OpenMP keeps the count per thread)."""
    total = torch.get_num_threads()
    per_worker = max(1, total // max(1, workers))

    def use() -> None:
        torch.set_num_threads(per_worker)

    return total, use


def predict_studies(
    inputs: list[str | Path],
    models: list[EchoModel],
    thresholds: str = "default",
    overlay_dir: str | Path | None = None,
    batch_size: int = 16,
    workers: int = 2,
    pane: int | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per input cine (folders expanded), in input order; unreadable files get a row with `error`.

    `workers` studies are decoded and measured at once, each in its own thread, with torch's threads divided among
    them (0 or 1: one after the other). Rows do not depend on it beyond float rounding. `pane`: which pane of
    multi-pane screens to measure (they are refused without it; `sonokit.preprocess.panes`).
    """
    from concurrent.futures import ThreadPoolExecutor

    from sonokit.io import find_inputs
    from sonokit.utils import progress

    seen: set[Path] = set()
    used: set[str] = set()
    # input order; a path that finds nothing stays as its error
    todo: list[tuple[Path, Path | None] | InputError] = []
    for raw in inputs:
        try:
            found = find_inputs([raw])
        except InputError as err:
            todo.append(err)
            continue
        for f in found:
            if f in seen:
                continue
            seen.add(f)
            overlay = None
            if overlay_dir is not None:
                stem = f.stem
                while stem in used:
                    stem += "_"
                used.add(stem)
                overlay = Path(overlay_dir) / f"{stem}.webm"
            todo.append((f, overlay))
    sizes = {m.run.cfg.size for m in models}
    total_threads, use_threads = _split_threads(workers)

    def measure(item: tuple[Path, Path | None] | InputError) -> dict[str, Any]:
        if isinstance(item, InputError):
            return {"path": str(item.path or ""), "error": str(item).split(": ", 1)[-1]}
        f, overlay = item
        if workers > 1:
            use_threads()
        try:
            study = load_study(f, sizes, keep_original=overlay is not None, pane=pane)
            return {**predict_study(f, models, thresholds, overlay, batch_size, study), "error": ""}
        except _READ_ERRORS as err:
            message = str(err) if isinstance(err, InputError) and err.path else f"{f}: {err}"
            return {"path": str(f), "error": message.split(": ", 1)[-1].splitlines()[0], "_message": message}

    if workers > 1:
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ef-predict") as pool:
                rows = list(
                    progress(pool.map(measure, todo), desc="ef predict", total=len(todo), unit="study")
                )
        finally:
            torch.set_num_threads(total_threads)
    else:
        rows = [measure(item) for item in progress(todo, desc="ef predict", total=len(todo), unit="study")]
    errors: list[str] = []  # in input order, whatever order the threads finished in
    for item, row in zip(todo, rows, strict=True):
        if isinstance(item, InputError):
            errors.append(str(item))
        elif "_message" in row:
            errors.append(row.pop("_message").splitlines()[0])
    return pd.DataFrame(rows), errors


def predict_to_csv(
    run_dirs: list[str | Path],
    inputs: list[str | Path],
    out: str | Path,
    thresholds: str = "default",
    overlay_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 16,
    workers: int = 2,
    pane: int | None = None,
    applicability: bool = True,
) -> PredictionFile:
    """`sonokit ef predict`: load the runs, measure every input, write the CSV atomically (error rows included)."""
    from sonokit.clinical import get_thresholds
    from sonokit.utils import write_csv

    get_thresholds(thresholds)  # an unknown preset fails before any model is loaded
    models = load_echo_models(run_dirs, device, applicability)
    table, errors = predict_studies(inputs, models, thresholds, overlay_dir, batch_size, workers, pane)
    path = write_csv(table, out) if not table.empty else None
    return PredictionFile(path, len(table), errors, table)
