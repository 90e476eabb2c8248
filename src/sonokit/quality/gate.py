"""The quality gate: classify every image of a folder as original / scale-up / blur / noise, keep or reject it.

Why: a dataset assembled from scanners and exports carries zoomed, smoothed or noisy frames that quietly hurt a
downstream model; the study's answer was a classifier that discards them. The gate writes one CSV row per image
(class, probability, estimated SSIM, decision) and, only when asked, moves rejected files into a folder. It never
deletes a file, and every move is logged in the CSV (`moved_to`), so a gate run can be undone by moving back.

Decision: an image is rejected when the probability that it is corrupted, 1 - p(original), is at least
`threshold` (default 0.5: the classifier's own argmax between "original" and "any corruption"); a lower threshold
is a stricter gate. With a run's applicability check (sonokit.uncertainty.applicability), an image that does not
look like the run's training data gets "not applicable" instead: the gate cannot judge its quality, so it is
neither kept as clean nor moved.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.data.frames import read_gray
from sonokit.errors import InputError
from sonokit.quality.dataset import MIN_SIDE, QUALITY_CLASSES
from sonokit.utils import get_logger, progress, write_csv

log = get_logger(__name__)

#: images (uint8 grey, native size) -> (class probabilities (N, K), estimated SSIM (N,))
GatePredictFn = Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]]
#: called after each GatePredictFn batch -> (applicable (N,) bool, applicability (N,) p-value) of that batch
GateCheckFn = Callable[[], tuple[np.ndarray, np.ndarray]]
NOT_APPLICABLE = "not applicable"

GATE_COLUMNS = [
    "path",
    "class",
    "probability",
    *[f"p_{c}" for c in QUALITY_CLASSES],
    "p_corrupted",
    "ssim_est",
    "applicable",
    "applicability",
    "decision",
    "moved_to",
]


def decide(probs: np.ndarray, classes: Sequence[str] = QUALITY_CLASSES, threshold: float = 0.5) -> np.ndarray:
    """ "keep"/"reject" per row: reject when 1 - p(original) >= threshold."""
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"--threshold must be in (0, 1], got {threshold}")
    p_corrupt = 1.0 - probs[:, list(classes).index("original")]
    return np.where(p_corrupt >= threshold, "reject", "keep")


def _destination(folder: Path, source: Path, taken: set[Path]) -> Path:
    """folder/name, or folder/name_1, name_2 ... when that name exists or is already planned."""
    candidate = folder / source.name
    k = 1
    while candidate.exists() or candidate in taken:
        candidate = folder / f"{source.stem}_{k}{source.suffix}"
        k += 1
    taken.add(candidate)
    return candidate


def run_gate(
    inputs: Sequence[str | Path],
    predict_fn: GatePredictFn,
    out_csv: str | Path,
    threshold: float = 0.5,
    move_rejected: str | Path | None = None,
    classes: Sequence[str] = QUALITY_CLASSES,
    batch_size: int = 16,
    check: GateCheckFn | None = None,
) -> pd.DataFrame:
    """Gate `inputs` (image files and folders, searched recursively) and write `out_csv`; return its rows.

    Every file is read before anything is moved or written, so an unreadable file stops the run with its name
    and leaves the folder as it was. Files already inside `move_rejected` are skipped (a second run over the
    same folder does not re-gate the rejects). Moves happen only when `move_rejected` is given.
    """
    from sonokit.io import find_inputs

    if not 0.0 < threshold <= 1.0:
        raise InputError(f"--threshold must be in (0, 1], got {threshold}")
    reject_dir = Path(move_rejected).resolve() if move_rejected is not None else None
    files = [f.resolve() for f in find_inputs(inputs, kinds=("image",))]
    if reject_dir is not None:
        files = [f for f in files if reject_dir not in f.parents]
    if not files:
        raise InputError("no images left to gate (all are inside the --move-rejected folder)", reject_dir)

    probs_parts, ssim_parts, ok_parts, p_parts = [], [], [], []
    for start in progress(range(0, len(files), batch_size), desc="gate", total=-(-len(files) // batch_size)):
        batch = [read_gray(f, min_side=MIN_SIDE) for f in files[start : start + batch_size]]
        p, s = predict_fn(batch)
        probs_parts.append(np.asarray(p, dtype=float))
        ssim_parts.append(np.asarray(s, dtype=float))
        if check is not None:
            ok, p_value = check()
            ok_parts.append(np.asarray(ok, dtype=bool))
            p_parts.append(np.asarray(p_value, dtype=float))
    probs = np.concatenate(probs_parts)
    ssim_est = np.concatenate(ssim_parts)
    if probs.shape != (len(files), len(classes)):
        raise InputError(
            f"the quality model returned probabilities of shape {probs.shape}, expected "
            f"({len(files)}, {len(classes)})"
        )

    decisions = decide(probs, classes, threshold).astype(object)
    if check is not None:
        applicable = np.concatenate(ok_parts)
        decisions[~applicable] = NOT_APPLICABLE
    table = pd.DataFrame({"path": [str(f) for f in files]})
    table["class"] = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
    table["probability"] = probs.max(axis=1)
    for j, c in enumerate(classes):
        table[f"p_{c}"] = probs[:, j]
    table["p_corrupted"] = 1.0 - probs[:, list(classes).index("original")]
    table["ssim_est"] = ssim_est
    table["applicable"] = applicable if check is not None else ""
    table["applicability"] = np.concatenate(p_parts) if check is not None else np.nan
    table["decision"] = decisions
    table["moved_to"] = ""

    try:
        if reject_dir is not None:
            reject_dir.mkdir(parents=True, exist_ok=True)
            taken: set[Path] = set()
            for i in np.flatnonzero(decisions == "reject"):
                source = files[i]
                target = _destination(reject_dir, source, taken)
                shutil.move(str(source), str(target))
                table.at[i, "moved_to"] = str(target)
                log.info("moved a rejected image to %s", target.parent)
    finally:
        # the CSV is written even when a move fails part-way, so every move that happened is on record
        write_csv(table[GATE_COLUMNS], out_csv)
    n_reject = int((decisions == "reject").sum())
    n_foreign = int((decisions == NOT_APPLICABLE).sum())
    log.info(
        "gate: %d images, %d kept, %d rejected, %d not applicable%s",
        len(files),
        len(files) - n_reject - n_foreign,
        n_reject,
        n_foreign,
        f", moved to {reject_dir}" if reject_dir is not None else " (nothing moved)",
    )
    return table[GATE_COLUMNS]


def check_with_run(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out_csv: str | Path,
    threshold: float = 0.5,
    move_rejected: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 16,
    applicability: bool = True,
) -> pd.DataFrame:
    """`run_gate` with a trained `quality` run folder as the model, and its applicability check (fitted from the
    run's own data when missing; without one, a warning and empty columns) unless `applicability` is False."""
    from sonokit.core.run import load_run
    from sonokit.models.embedding import FeatureTap
    from sonokit.predict import Predictor
    from sonokit.systems import QUALITY
    from sonokit.uncertainty.applicability import load_check

    run = QUALITY.require(load_run(run_dir, device), "gate", run_dir)
    predictor = Predictor(run)

    def predict(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        out = predictor.arrays(images)
        return out["probs"], out["ssim_pred"]

    scorer = load_check(run) if applicability else None
    if scorer is None:
        return run_gate(inputs, predict, out_csv, threshold, move_rejected, run.task.classes, batch_size)
    with FeatureTap(run.model) as tap:

        def check() -> tuple[np.ndarray, np.ndarray]:
            fit = scorer.score(tap.take())  # the features of the batch predict() just ran
            return fit["applicable"], fit["applicability"]

        return run_gate(
            inputs, predict, out_csv, threshold, move_rejected, run.task.classes, batch_size, check
        )
