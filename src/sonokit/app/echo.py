"""Echo LVEF on one cine: sonokit.echo.predict.measure_study's row, shaped for the page.

The EF, EDV/ESV, heart-function class, beats and the overlay WebM are predict_study's; the chart is the LV
model's area curve; the EF interval is split-conformal on the EF run's validation videos, read as `sonokit
uncertainty` reads them (sonokit.uncertainty.report.reported_rows).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.app.choices import Options
from sonokit.app.failures import one_line
from sonokit.app.models import Models
from sonokit.errors import SonokitError


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


def with_clip(m: Any, frames: int | None, period: int | None) -> Any:
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
    """Half-width of the split-conformal EF interval from the run's validation videos, or None and why not
    (kept per run and alpha)."""
    key = (str(run_dir), alpha)
    if key not in models._ef_q:
        try:
            models._ef_q[key] = _interval(Path(run_dir) / "predictions_val.csv", alpha)
        except (SonokitError, OSError, ValueError) as err:
            models._ef_q[key] = (None, f"no interval: {one_line(err)}")
    return models._ef_q[key]


def _interval(path: Path, alpha: float) -> tuple[float | None, str]:
    from sonokit.uncertainty import conformal_regression
    from sonokit.uncertainty.report import reported_rows

    if not path.is_file():
        return None, "no validation predictions in the run folder: no interval"
    df = reported_rows(path)
    q = conformal_regression(df["y_pred"], df["y_true"], alpha) if len(df) else math.inf
    if not math.isfinite(q):
        return None, f"{len(df)} validation videos are too few for a {1 - alpha:.0%} conformal interval"
    return q, f"split-conformal {1 - alpha:.0%} interval from {len(df)} validation videos"


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None


def _floats(text: Any) -> list[float]:
    if not isinstance(text, str) or not text:
        return []
    return [float(v) for v in text.split(";")]


def analyse_echo(models: Models, path: Path, workdir: Path, options: Options) -> EchoResult:
    """EF (headline from the model `options.ef_headline` names), volumes, beats, curve and overlay of one cine."""
    from sonokit.echo.predict import measure_study

    echo_models = [with_clip(m, options.frames, options.period) for m in models.echo]
    # predict_study takes its headline EF from the first model
    echo_models.sort(key=lambda m: (m.role == "video") != (options.ef_headline == "video"))
    overlay = workdir / "overlay.webm"
    measured = measure_study(path, echo_models, options.thresholds, overlay=overlay)
    row = measured.row
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
    video = next((m for m in echo_models if m.role == "video"), None)
    if video is not None:
        _video_part(res, models, video, options.alpha)
    lv = next((m for m in echo_models if m.role != "video"), None)
    if lv is not None:
        _lv_part(res, lv.key, measured.lv.get(lv.key))
    return res


def _video_part(res: EchoResult, models: Models, video: Any, alpha: float) -> None:
    """The video model's EF, its spread over clips and beats, and its conformal interval."""
    k, row = video.key, res.row
    res.ef_video = float(row[f"ef_{k}"])
    res.ef_video_sd = float(row.get(f"ef_{k}_sd", math.nan))
    res.ef_video_beats = float(row.get(f"ef_{k}_beats", math.nan))
    q, res.interval_note = ef_interval(models, video.run.run_dir, alpha)
    if video.run is not next(m.run for m in models.echo if m.role == "video"):
        res.interval_note += " (calibrated with the model's own clip sampling, not the sidebar's)"
    if q is not None and math.isfinite(res.ef_video):
        res.interval = (res.ef_video - q, res.ef_video + q)
        res.interval_level = 1.0 - alpha


def _lv_part(res: EchoResult, k: str, lvr: Any) -> None:
    """The LV model's EF, volumes and beats from the row; its area curve when it measured this cine (`lvr`,
    None when it failed: the row's flags say why)."""
    row = res.row
    res.ef_lv = float(row[f"ef_{k}"])
    res.edv, res.esv = float(row[f"edv_{k}"]), float(row[f"esv_{k}"])
    ed, es = _floats(row.get(f"ed_frames_{k}")), _floats(row.get(f"es_frames_{k}"))
    efs = _floats(row.get(f"beat_efs_{k}"))
    if row.get(f"beat_source_{k}") == "beats":
        res.beats = [
            {"beat": i + 1, "ed": int(a), "es": int(b), "ef": e}
            for i, (a, b, e) in enumerate(zip(ed, es, efs, strict=False))
        ]
    if lvr is None:
        return
    ms = lvr.spacing_mm
    if ms is not None:
        res.curve, res.curve_label = lvr.area * ms[0] * ms[1] / 100.0, "LV area (cm²)"
    else:
        res.curve, res.curve_label = lvr.area.astype(float), "LV area (model pixels²)"
    res.ed, res.es = [b.ed for b in lvr.beats], [b.es for b in lvr.beats]
    for b, v_ed, v_es in zip(res.beats, lvr.edv, lvr.esv, strict=False):
        b["edv"], b["esv"] = v_ed, v_es
