"""Pictures of detections: frames with the true box (green) and the detected box (red, with its score)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.data.frames import read_gray_array
from sonokit.data.shown import read_shown

GREEN = (0, 200, 0)
RED = (230, 30, 30)


def draw_boxes(
    image: np.ndarray, truth: np.ndarray | None, box: np.ndarray | None, score: float | None
) -> np.ndarray:
    """RGB uint8 copy of a gray frame with the true box (green) and the predicted box (red)."""
    import cv2

    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy()
    for b, color in ((truth, GREEN), (box, RED)):
        if b is not None and np.all(np.isfinite(b)):
            x1, y1, x2, y2 = (int(round(v)) for v in b)
            cv2.rectangle(rgb, (x1, y1), (max(x2 - 1, x1), max(y2 - 1, y1)), color, 1)
    if score is not None and box is not None and np.all(np.isfinite(box)):
        cv2.putText(
            rgb, f"{score:.2f}", (int(box[0]), max(int(box[1]) - 2, 8)), cv2.FONT_HERSHEY_PLAIN, 0.7, RED, 1
        )
    return rgb


def detection_montage(
    preds: pd.DataFrame, path: str | Path, n: int = 12, seed: int = 0, cols: int = 4
) -> Path:
    """A grid of n seeded-random frames of a detection predictions table (needs path, x1..y2, score)."""
    import cv2

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(preds), size=min(n, len(preds)), replace=False)
    tiles = []
    for i in sorted(chosen):
        row = preds.iloc[int(i)]
        frame = int(row["frame"]) if "frame" in preds.columns and pd.notna(row.get("frame")) else 0
        image = read_gray_array(read_shown(row["path"], frame), row["path"])  # no burned-in text in the PNG
        truth = (
            row[["gt_x1", "gt_y1", "gt_x2", "gt_y2"]].to_numpy(float) if "gt_x1" in preds.columns else None
        )
        found = row.get("status") == "ok"
        box = row[["x1", "y1", "x2", "y2"]].to_numpy(float) if found else None
        tiles.append(draw_boxes(image, truth, box, float(row["score"]) if found else None))
    side = max(max(t.shape[:2]) for t in tiles)
    tiles = [
        cv2.resize(t, (side, side), interpolation=cv2.INTER_NEAREST) if t.shape[:2] != (side, side) else t
        for t in tiles
    ]
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[r : r + cols]) for r in range(0, len(tiles), cols)])
    from sonokit.io import write_image

    return write_image(Path(path), grid)
