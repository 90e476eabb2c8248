"""Self-training of the LV models on a user's unlabelled cines (`sonokit train lv-seg --unlabelled REAL`).

A clinic has cines but no tracings; a model trained on other cines (e.g. `sonokit synth echo`) meets them as a
new domain. Self-training (pseudo-labelling, as in Noisy Student, Xie et al. 2020) closes part of that gap:
    1. the teacher, trained as usual on the labelled data, outlines the LV on every frame of each unlabelled cine;
    2. only outlines that pass anatomy and temporal checks are kept (below), at the ED and ES frames of the
       beats the teacher's own area curve shows, as EchoNet's experts trace them;
    3. each kept outline becomes a tracing (long axis and 20 chords, `clinical.tracing_from_mask`) in the cine's
       own pixels, written to `pseudo_labels.csv`;
    4. the student, with the teacher's settings, trains from the start on the labelled frames plus these
       (`options.pseudo_labels`), with the same augmentation: the pseudo-tracings move with the frame like
       expert ones. Validation and test stay on the labelled data.
The checks are what a sonographer would look at: one compact LV-sized region, nearly convex, steady between
neighbouring frames, in a cine whose area curve beats, with a plausible EF. A cine that fails them gives no
pseudo-labels and says why in `pseudo_report.csv`; none of this needs labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonokit.echo.predict import PLAUSIBLE_EF
from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

PSEUDO_LABELS = "pseudo_labels.csv"
PSEUDO_REPORT = "pseudo_report.csv"
TEACHER = "teacher"
#: The group (patient) of an unlabelled cine's pseudo-labelled frames: its own, never shared with labelled data.
PSEUDO_GROUP = "unlabelled:"
LABEL_COLUMNS = ["path", "frame", "phase", "beat", "ef", "lines"]


@dataclass(frozen=True)
class PseudoRules:
    """What a teacher's outline must pass to become a pseudo-label (fractions of the model's square image)."""

    min_consistency: float = 0.85  # the cine's mean consecutive-frame Dice (ef predict flags below 0.8)
    min_neighbour_dice: float = 0.85  # the frame's mask against each neighbouring frame's
    min_area: float = 0.01  # smallest LV share of the image
    max_area: float = 0.35  # largest: a mask over most of the sector is not a ventricle
    min_main_share: float = (
        0.8  # the largest connected region's share of the mask (specks beside it are dropped)
    )
    min_solidity: float = 0.85  # area / convex hull area: the LV cavity is nearly convex
    ef_range: tuple[float, float] = PLAUSIBLE_EF  # a beat outside it is implausible


def frame_problem(masks: np.ndarray, f: int, rules: PseudoRules) -> str | None:
    """Why frame f's mask (of the cine's (F, S, S) masks) is no pseudo-label, or None when it passes."""
    import cv2

    from sonokit.echo.evaluate import dice

    m = masks[f]
    area = float(m.sum()) / m.size
    if not rules.min_area <= area <= rules.max_area:
        return f"LV area {100 * area:.1f}% of the image (outside {100 * rules.min_area:g}-{100 * rules.max_area:g}%)"
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    main = int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1
    share = stats[main, cv2.CC_STAT_AREA] / m.sum()
    if share < rules.min_main_share:
        return f"the outline is split into {n - 1} regions (largest {100 * share:.0f}%)"
    contours, _ = cv2.findContours(
        (labels == main).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    hull = cv2.contourArea(cv2.convexHull(max(contours, key=cv2.contourArea)))
    solidity = stats[main, cv2.CC_STAT_AREA] / max(hull, 1.0)
    if solidity < rules.min_solidity:
        return f"outline not compact (solidity {solidity:.2f})"
    for g in (f - 1, f + 1):
        if 0 <= g < len(masks):
            d = dice(m, masks[g])
            if d < rules.min_neighbour_dice:
                return f"outline jumps from frame {g} (Dice {d:.2f})"
    return None


def pseudo_label_cine(model: Any, cine: Any, rules: PseudoRules) -> tuple[list[dict[str, Any]], str, int]:
    """(pseudo-label rows, reason for what was left out or "", beats found) of one prepared cine.

    `model` is a loaded sonokit.echo.predict.EchoModel (lv-seg or lv-trace), `cine` a PreparedCine at its size.
    """
    from sonokit.clinical import ejection_fraction, rasterize_tracing, tracing_from_mask, volume_from_tracing
    from sonokit.echo.predict import frame_consistency, measure_lv

    res = measure_lv(model, cine)
    size = model.run.cfg.size
    masks = res.masks
    if masks is None:  # a tracing model: its outlines as masks
        masks = np.stack([rasterize_tracing(t, (size, size)) for t in res.lines])
    if res.beat_source != "beats":
        return [], "no heartbeat in the teacher's LV area curve", 0
    n_beats = len(res.beats)
    largest = float(masks.reshape(len(masks), -1).sum(axis=1).max()) / (size * size)
    if largest < rules.min_area:  # also keeps an empty cine's consistency (NaN) out of the message below
        return [], f"no LV found (largest outline {100 * largest:.2f}% of the image)", n_beats
    consistency = frame_consistency(masks)
    if not consistency >= rules.min_consistency:
        return [], f"outline unsteady (consecutive-frame Dice {consistency:.2f})", n_beats
    rows: list[dict[str, Any]] = []
    reasons: list[str] = []
    low, high = rules.ef_range
    for k, beat in enumerate(res.beats):
        problems = [p for p in (frame_problem(masks, f, rules) for f in (beat.ed, beat.es)) if p]
        if problems:
            reasons.append(problems[0])
            continue
        try:
            lines = {f: tracing_from_mask(masks[f]) for f in (beat.ed, beat.es)}
            ef = ejection_fraction(volume_from_tracing(lines[beat.ed]), volume_from_tracing(lines[beat.es]))
        except InputError as err:
            reasons.append(str(err))
            continue
        if not (math.isfinite(ef) and low <= ef <= high):
            reasons.append(f"implausible EF {ef:.0f}%")
            continue
        for f, phase in ((beat.ed, "ED"), (beat.es, "ES")):
            original = to_original(lines[f], cine.transform)
            rows.append(
                {"path": str(cine.path), "frame": int(f), "phase": phase, "beat": k, "ef": round(float(ef), 2),
                 "lines": json.dumps(np.round(original, 3).reshape(-1).tolist())}
            )  # fmt: skip
    reason = ""
    if reasons:
        reason = f"{len(reasons)} of {len(res.beats)} beats left out (first: {reasons[0]})"
    return rows, reason, n_beats


def to_original(lines: np.ndarray, transform: Any) -> np.ndarray:
    """A (21, 4) tracing from model pixels to the cine's original pixels (what VolumeTracings.csv holds)."""
    pts = np.asarray(lines, dtype=np.float64).reshape(-1, 2)
    return transform.to_original(pts).reshape(-1, 4)


@dataclass
class PseudoLabels:
    """What pseudo-labelling wrote: the labels' and the report's paths and counts."""

    labels: Path
    report: Path
    cines: int
    cines_used: int
    frames: int


def pseudo_label(
    teacher: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    rules: PseudoRules | None = None,
    device: str = "auto",
) -> PseudoLabels:
    """Pseudo-label every readable cine in `inputs` (files or folders) with the teacher run; write
    OUT_DIR/pseudo_labels.csv and OUT_DIR/pseudo_report.csv (each written whole, then renamed).

    A file that cannot be read as a cine is reported (one line, in the report) and left out; InputError when no
    input is a readable cine."""
    from sonokit.echo.frames import PreparedStore
    from sonokit.echo.predict import load_echo_models
    from sonokit.io import find_inputs
    from sonokit.utils.atomic import atomic_path

    rules = rules or PseudoRules()
    files = find_inputs(inputs, kinds=("dicom", "video"))
    (model,) = load_echo_models([teacher], device, applicability=False)
    if model.role not in ("seg", "trace"):
        raise InputError(
            f"pseudo-labels come from an lv-seg or lv-trace run, not {model.run.task.name}", teacher
        )
    store = PreparedStore(model.run.cfg.size)
    labels: list[dict[str, Any]] = []
    report: list[dict[str, Any]] = []
    readable = 0
    for path in files:
        entry: dict[str, Any] = {"path": str(path), "n_frames": 0, "n_beats": 0, "frames": 0, "reason": ""}
        try:
            cine = store.get(path)
        except InputError as err:
            entry["reason"] = f"not read: {str(err).splitlines()[0]}"
            report.append(entry)
            log.warning("unlabelled %s", entry["reason"])
            continue
        readable += 1
        rows, reason, n_beats = pseudo_label_cine(model, cine, rules)
        entry.update(n_frames=len(cine.frames), n_beats=n_beats, frames=len(rows), reason=reason)
        labels += rows
        report.append(entry)
    if readable == 0:
        raise InputError(f"none of the {len(files)} unlabelled files is a readable cine", Path(inputs[0]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for table, name in (
        (pd.DataFrame(labels, columns=LABEL_COLUMNS), PSEUDO_LABELS),
        (pd.DataFrame(report), PSEUDO_REPORT),
    ):
        with atomic_path(out_dir / name) as tmp:
            table.to_csv(tmp, index=False)
    used = sum(1 for r in report if r["frames"] > 0)
    log.info(
        "pseudo-labels: %d frames from %d of %d unlabelled cines (%s)",
        len(labels), used, len(files), out_dir / PSEUDO_REPORT,
    )  # fmt: skip
    return PseudoLabels(out_dir / PSEUDO_LABELS, out_dir / PSEUDO_REPORT, len(files), used, len(labels))


def read_pseudo_labels(path: str | Path) -> dict[str, dict[int, tuple[str, np.ndarray]]]:
    """{cine path: {frame: (phase, (21, 4) tracing in original pixels)}} from a pseudo_labels.csv."""
    from sonokit.data.validate import require_columns

    path = Path(path)
    if not path.is_file():
        raise InputError("no such pseudo-label file (options.pseudo_labels)", path)
    df = pd.read_csv(path)
    require_columns(df.columns, ["path", "frame", "phase", "lines"], path)
    out: dict[str, dict[int, tuple[str, np.ndarray]]] = {}
    for i, row in df.iterrows():
        try:
            lines = np.asarray(json.loads(row["lines"]), dtype=np.float64).reshape(21, 4)
        except (ValueError, TypeError) as err:
            raise InputError(f"row {i + 2}: lines is not 84 numbers ({err})", path) from None
        if not np.isfinite(lines).all():
            raise InputError(f"row {i + 2}: lines has NaN or infinite values", path)
        out.setdefault(str(row["path"]), {})[int(row["frame"])] = (str(row["phase"]), lines)
    return out


def train_with_unlabelled(cfg: Any, unlabelled: Sequence[str | Path], callbacks: Sequence[Any] = ()) -> Path:
    """Teacher, pseudo-labels, student: `sonokit train lv-seg --data LABELLED --unlabelled REAL --out RUN`.

    RUN/teacher/ is an ordinary run on the labelled data; RUN/pseudo_labels.csv and RUN/pseudo_report.csv come from
    it; RUN itself is the student (config.yaml names the pseudo-labels). Each stage that finished is reused when
    the command is run again (a stopped teacher resumes), so the three can run in pieces."""
    from sonokit.core.run import CARD, CHECKPOINT
    from sonokit.io import find_inputs
    from sonokit.train.engine import default_run_dir, train

    if cfg.task not in ("lv-seg", "lv-trace"):
        raise InputError(f"--unlabelled trains lv-seg or lv-trace (self-training), not {cfg.task}")
    if cfg.folds >= 2 or cfg.fold_col:
        raise InputError("--unlabelled and --folds do not go together: self-train one split at a time")
    files = find_inputs(unlabelled, kinds=("dicom", "video"))  # a wrong path fails now, not after the teacher
    out = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    teacher = out / TEACHER
    if not (teacher / CARD).is_file():
        log.info("self-training 1/3: the teacher on %s -> %s", cfg.data, teacher)
        train(
            cfg.model_copy(update={"out": str(teacher), "resume": (teacher / CHECKPOINT).is_file()}),
            callbacks,
        )
    labels = out / PSEUDO_LABELS
    if not labels.is_file():
        log.info("self-training 2/3: pseudo-labels on %d unlabelled file(s)", len(files))
        found = pseudo_label(teacher, files, out, device=cfg.device)
        if found.frames == 0:
            labels.unlink()  # a rerun tries again (e.g. with other cines) instead of training on nothing new
            raise InputError(
                f"no frame of the {found.cines} unlabelled cines passed the checks (reasons in "
                f"{found.report}); the teacher in {teacher} is the model trained without them"
            )
    log.info("self-training 3/3: the student on %s + %s -> %s", cfg.data, labels, out)
    options = {**cfg.options, "pseudo_labels": str(labels.resolve())}
    return train(cfg.model_copy(update={"out": str(out), "options": options}), callbacks)
