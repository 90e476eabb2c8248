"""One uploaded file through every chosen system, as plain data the page (or a test) renders.

No Streamlit here: `analyse_upload(name, data, models, options)` writes the bytes to a private temporary folder,
runs the systems and deletes the folder, and returns a StudyResult of numbers, numpy images and bytes. Each
system is one module of this package, each calling its system's own library functions:

    loading         sonokit.app.models (the selected runs, once per Selection, and what each run fitted)
    header          sonokit.io.describe (DICOM: its allow-listed, de-identified summary)
    quality gate    sonokit.app.quality (sonokit.predict.Predictor.arrays + sonokit.quality.gate.decide)
    echo            sonokit.app.echo (sonokit.echo.predict's EF, EDV/ESV, class, beats, overlay, LV curve;
                    a split-conformal EF interval on the EF run's validation videos)
    classifiers     sonokit.app.classify (applicability first, then temperature, conformal set and abstention
                    from the state `sonokit uncertainty` fitted, Grad-CAM, similar training cases)
    aortic valve    sonokit.app.valve (sonokit.av.cascade.Cascade: box, crop, calcification probability)

Every image that reaches the page is masked outside the detected ultrasound region first (burned-in names and
dates live there; sonokit.app.images); when no region is found, the image is not shown at all. A file that
cannot be read gives a result with `error` set; a system that fails on a readable file gives that section an
error; neither stops the other files or systems. Error messages name the file by its upload name, never by the
temporary path.

`checkpoint(stage)`, when given, is called before each step (reading, then each system). The page passes a
function that updates its progress bar: every Streamlit call is where Streamlit stops a script whose browser
session has ended (it raises its StopException there), so an analysis stops at the next step after the user
leaves instead of running to the end. A step already started finishes; the size limits bound it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.app.choices import Options, Selection
from sonokit.app.classify import ClassResult, SimilarCase, classify
from sonokit.app.echo import EchoResult, analyse_echo
from sonokit.app.failures import SYSTEM_ERRORS, clean, one_line
from sonokit.app.images import detect, mask
from sonokit.app.models import Models, load_models
from sonokit.app.quality import QualityVerdict, assess_quality
from sonokit.app.valve import AVResult, analyse_valve
from sonokit.errors import InputError, SonokitError
from sonokit.utils import get_logger

__all__ = [
    "AVResult",
    "ClassResult",
    "EchoResult",
    "Models",
    "Options",
    "QualityVerdict",
    "Selection",
    "SimilarCase",
    "StudyResult",
    "analyse_file",
    "analyse_upload",
    "load_models",
    "safe_suffix",
]

log = get_logger(__name__)

#: header fields never shown (the temporary path) or shown elsewhere
_HIDDEN_HEADER = {"path", "regions", "transfer_syntax_uid"}


@dataclass
class StudyResult:
    """Everything the page shows for one upload; `errors` and `notes` say why a system's section is missing."""

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


def _read(path: Path, result: StudyResult) -> tuple[int, dict[int, np.ndarray]]:
    """Fill the header; return the frame count and up to DETECT_FRAMES frames spread over the file (the ones
    region detection looks at, reused for the preview and Grad-CAM)."""
    from sonokit.data.shown import DETECT_FRAMES
    from sonokit.io import describe, open_cine

    info = describe(path)
    result.kind = str(info.get("format") or "")
    result.header = _header(info)
    n_frames = int(info["frames"])
    if n_frames < 1:
        raise InputError("no frames", path)
    with open_cine(path) as cine:
        picks = np.unique(np.linspace(0, n_frames - 1, min(n_frames, DETECT_FRAMES)).round().astype(int))
        return n_frames, {int(i): np.asarray(cine.frame(int(i))) for i in picks}


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
    step = checkpoint or (lambda stage: None)
    t0 = time.perf_counter()
    path, workdir = Path(path), Path(workdir)
    result = StudyResult(name=name)

    def run(system: str, stage: str, fn: Callable[[], Any]) -> Any:
        """`fn()` after the checkpoint; a failure becomes the section's one-line error."""
        step(stage)
        try:
            return fn()
        except SYSTEM_ERRORS as err:
            result.errors[system] = clean(one_line(err), path, name)
            if not isinstance(err, SonokitError):
                log.warning("%s failed on an upload: %s", system, type(err).__name__, exc_info=True)
            return None

    step("reading")
    try:
        n_frames, original = _read(path, result)
    except (*SYSTEM_ERRORS, MemoryError) as err:
        result.error = clean(one_line(err), path, name)
        result.seconds = time.perf_counter() - t0
        return result
    picks = sorted(original)
    middle = picks[len(picks) // 2]
    sector = detect(np.stack([original[i] for i in picks]))
    result.preview = mask(original[middle], sector)
    result.masked = result.preview is not None
    if sector is None:
        result.mask_note = (
            "no ultrasound region found: images of this file are not shown (they may carry burned-in text)"
        )

    if models.quality is not None:
        result.quality = run(
            "quality",
            "quality",
            lambda: assess_quality(models.quality, original[middle], middle, options.quality_threshold),
        )
    if models.echo:
        if n_frames < 3:
            result.notes["echo"] = f"EF needs a cine; this {result.kind or 'file'} has {n_frames} frame(s)"
        else:
            result.echo = run("echo", "echo", lambda: analyse_echo(models, path, workdir, options))
    for r in models.classifiers:
        answer = run(
            f"classification: {r.name}",
            r.name,
            lambda r=r: classify(models, r, path, original, sector, options),
        )
        if answer is not None:
            result.classifications.append(answer)
    if models.cascade is not None:
        result.av = run(
            "aortic valve",
            "aortic valve",
            lambda: analyse_valve(models.cascade, path, n_frames, sector, options),
        )
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
