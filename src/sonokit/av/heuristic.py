"""The heuristic baseline the paper's classifier had to beat: binarise the valve crop at a grey-level threshold and
call it calcified when any white pixel remains (calcium is the brightest thing in the frame).

`min_pixels` > 1 is the obvious hardening (a few bright speckle pixels no longer count); tables report both.
The crop is the same one the CNN sees (box enlarged by the same margin), before resizing, so the baseline is
judged on the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.av.metrics import binary_metrics

THRESHOLDS = (190, 200, 210, 220)
MIN_PIXELS = (1, 5)


def binarise(crop: np.ndarray, threshold: int) -> np.ndarray:
    """uint8 mask: 255 where the pixel is >= threshold, 0 elsewhere."""
    return np.where(np.asarray(crop) >= threshold, 255, 0).astype(np.uint8)


def white_pixels(crop: np.ndarray, threshold: int, noise_reduction: bool = False) -> int:
    """How many pixels stay white after binarising (after subtracting the crop's minimum if asked)."""
    pixels = np.asarray(crop)
    if noise_reduction and pixels.size:
        pixels = pixels.astype(np.int16) - int(pixels.min())
    return int(np.count_nonzero(binarise(pixels, threshold)))


def heuristic_calcified(
    crop: np.ndarray, threshold: int, min_pixels: int = 1, noise_reduction: bool = False
) -> bool:
    return white_pixels(crop, threshold, noise_reduction) >= min_pixels


def heuristic_table(
    crops: Sequence[np.ndarray],
    calcified: Sequence[bool] | np.ndarray,
    groups: Sequence | np.ndarray | None = None,
    thresholds: Sequence[int] = THRESHOLDS,
    min_pixels: Sequence[int] = MIN_PIXELS,
    noise_reduction: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (threshold, min_pixels): method, threshold, min_pixels and the binary metrics with CIs."""
    y = np.asarray(calcified, bool)
    if len(crops) != len(y):
        raise ValueError(f"{len(crops)} crops for {len(y)} labels")
    rows = []
    for t in thresholds:
        counts = np.array([white_pixels(c, int(t), noise_reduction) for c in crops], dtype=np.int64)
        for m in min_pixels:
            pred = counts >= int(m)
            rows.append(
                {"method": "heuristic", "threshold": int(t), "min_pixels": int(m),
                 **binary_metrics(y, pred, groups=groups, n_boot=n_boot, seed=seed)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def best_row(table: pd.DataFrame, metric: str = "f1") -> pd.Series:
    """The row with the highest `metric` (ties: the lower threshold, then fewer pixels)."""
    ordered = table.sort_values(
        [metric, "threshold", "min_pixels"], ascending=[False, True, True], kind="stable"
    )
    return ordered.iloc[0]


def evaluate_heuristic(
    data: str | Path,
    out: str | Path | None = None,
    split: str = "all",
    thresholds: Sequence[int] | None = None,
    min_pixels: Sequence[int] | None = None,
    margin: float = 0.1,
    noise_reduction: bool = False,
    seed: int = 0,
    n_boot: int = 1000,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    positive: str = "1",
) -> pd.DataFrame:
    """`sonokit av heuristic`: the table on ground-truth crops of a dataset's labelled, boxed frames.

    `split` other than "all" takes the patient split the av tasks make with the same seed and fractions.
    """
    from sonokit.av.data import NO_LABEL, crop, read_av_index, split_av_index
    from sonokit.data.frames import read_gray
    from sonokit.errors import InputError

    df = read_av_index(data)
    if split != "all":
        df = split_av_index(df, fractions, seed)
        df = df[df["split"] == split]
    df = df[(df["label"] != NO_LABEL) & (df["n_boxes"] > 0)].reset_index(drop=True)
    if df.empty:
        raise InputError(f"no labelled frames with a valve box in split {split!r}", data)
    crops = [crop(read_gray(p), b[0], margin)[0] for p, b in zip(df["path"], df["boxes"], strict=True)]
    table = heuristic_table(
        crops,
        (df["label"] == positive).to_numpy(),
        df["group"].astype(str).to_numpy(),
        thresholds or THRESHOLDS,
        min_pixels or MIN_PIXELS,
        noise_reduction,
        n_boot,
        seed,
    )
    table.insert(1, "boxes", "ground truth")
    if out is not None:
        from sonokit.av.tables import CALCIFICATION_COLUMNS, write_table

        cols = [c for c in CALCIFICATION_COLUMNS if c != "auroc"]  # a threshold rule has no ranking
        write_table(
            table,
            out,
            cols,
            ["f1", "precision", "recall", "specificity"],
            title=f"Heuristic baseline on ground-truth crops ({split}: {len(df)} frames)",
        )
    return table
