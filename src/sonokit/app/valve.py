"""The aortic-valve cascade on a few frames of one upload: sonokit.av.cascade.Cascade's box, crop and
calcification probability on the best-scoring frame the detector's training data covers."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.app.choices import Options
from sonokit.app.images import mask

AV_FRAMES = 8  # frames of a cine the detector looks at


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


def analyse_valve(cascade: Any, path: Path, n_frames: int, sector: Any, options: Options) -> AVResult:
    """Run `cascade` on up to AV_FRAMES frames of the file; `sector` masks what is shown."""
    from sonokit.av.cascade import NOT_APPLICABLE, OK
    from sonokit.av.plots import draw_boxes
    from sonokit.data.frames import read_gray, sample_indices

    if options.av_threshold is not None:  # a copy: the cached cascade keeps the run's own threshold
        cascade = copy.copy(cascade)
        cascade.score_threshold = float(options.av_threshold)
    frames = [int(i) for i in sample_indices(n_frames, 1, AV_FRAMES)] if n_frames > 1 else [0]
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
    masked = mask(image, sector)
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
