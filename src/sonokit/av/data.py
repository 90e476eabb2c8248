"""The aortic-valve dataset index and the image/crop preprocessing that training, evaluation and the cascade share.

Layout (what `sonokit synth psax` writes, and what a real dataset should be converted to):
    DIR/boxes.csv   path, x1, y1, x2, y2, label   (valve boxes in pixels; one row per box)
    DIR/labels.csv  path, label[, group, split]   (calcified 1 / 0 per frame; group = patient)   optional
Frames listed in labels.csv without a box are frames where no valve is visible (negatives for the detector).
`--data` may also name boxes.csv directly (then only boxed frames, each its own group unless it has a group
column).

Both av tasks index the same table and split it by patient, stratified by the calcification label, with the
same seed and fractions: a detector and a classifier trained on one folder hold out the same patients, which is
what the cascade's held-out evaluation needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.av.boxes import Letterbox, crop_window
from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

BOXES_FILE = "boxes.csv"
LABELS_FILE = "labels.csv"
NO_LABEL = ""


def _files(source: Path) -> tuple[Path, Path | None]:
    if source.is_dir():
        boxes = source / BOXES_FILE
        if not boxes.is_file():
            raise InputError(
                f"no {BOXES_FILE} in the folder (expected {BOXES_FILE} [+ {LABELS_FILE}])", source
            )
        labels = source / LABELS_FILE
        return boxes, labels if labels.is_file() else None
    if source.is_file():
        return source, None
    raise InputError("no such file or folder", source)


def read_av_index(source: str | Path) -> pd.DataFrame:
    """One row per frame: path, group, split, label (calcified "1"/"0", or "" when unknown), boxes, n_boxes.

    `boxes` holds a float (n, 4) array of the frame's valve boxes in original pixels (n = 0: no valve).
    """
    from sonokit.data import read_boxes, read_table

    source = Path(source)
    boxes_csv, labels_csv = _files(source)
    box_rows = read_boxes(boxes_csv)
    by_path = {
        p: g[["x1", "y1", "x2", "y2"]].to_numpy(np.float64) for p, g in box_rows.groupby("path", sort=False)
    }
    if labels_csv is not None:
        frames = read_table(labels_csv)
        missing = sorted(set(by_path) - set(frames["path"]))
        if missing:
            raise InputError(
                f"{len(missing)} boxed frame(s) are not listed in {LABELS_FILE} (first: {Path(missing[0]).name})",
                boxes_csv,
            )
        if frames["path"].duplicated().any():
            raise InputError(f"{LABELS_FILE} lists a frame twice", labels_csv)
    else:
        frames = box_rows.drop_duplicates("path")[["path", "group", "split"]].assign(label=NO_LABEL)
    df = frames[["path", "label", "group", "split"] + [c for c in ("frame",) if c in frames.columns]].copy()
    df["label"] = df["label"].astype(str)
    df["boxes"] = [by_path.get(p, np.zeros((0, 4))) for p in df["path"]]
    df["n_boxes"] = [len(b) for b in df["boxes"]]
    if (df["n_boxes"] > 1).any():
        log.warning("%d frame(s) have more than one box", int((df["n_boxes"] > 1).sum()))
    return df.reset_index(drop=True)


def stratify_label(df: pd.DataFrame) -> pd.Series:
    """What the patient split balances: the calcification label where known, else valve present / absent."""
    has_valve = np.where(df["n_boxes"] > 0, "valve", "none")
    return pd.Series(np.where(df["label"] != NO_LABEL, df["label"], has_valve), index=df.index)


def split_av_index(df: pd.DataFrame, fractions: tuple[float, float, float], seed: int) -> pd.DataFrame:
    """assign_splits by patient, stratified by `stratify_label` (the same for both av tasks)."""
    from sonokit.data.splits import assign_splits

    work = df.assign(label=stratify_label(df))
    split = assign_splits(work, fractions, seed=seed)["split"].to_numpy()
    return df.assign(split=split)


# ---------------------------------------------------------------------------------------------- pixels


def letterbox_gray(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """The detector's input: uint8 (size, size) letterboxed image and the exact map that produced it."""
    from sonokit.data.datasets import letterbox

    return letterbox(image, size), Letterbox(image.shape[0], image.shape[1], size)


def crop(
    image: np.ndarray, box: np.ndarray | None, margin: float
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The crop around `box` enlarged by `margin` (None or a non-finite box: the whole image) and its window."""
    h, w = image.shape[:2]
    if box is None or not np.all(np.isfinite(box)):
        window = (0, 0, w, h)
    else:
        window = crop_window(box, margin, h, w)
    x1, y1, x2, y2 = window
    return image[y1:y2, x1:x2], window


def crop_input(crop_pixels: np.ndarray, size: int, noise_reduction: bool) -> np.ndarray:
    """The classifier's input: optional "noise reduction" (subtract the crop's minimum), then letterbox.

    The paper's noise reduction removes the grey floor a scanner's gain puts under every pixel, so the
    classifier sees contrast rather than overall brightness.
    """
    from sonokit.data.datasets import letterbox

    pixels = crop_pixels
    if noise_reduction and pixels.size:
        pixels = (pixels.astype(np.int16) - int(pixels.min())).astype(np.uint8)
    return letterbox(pixels, size)
