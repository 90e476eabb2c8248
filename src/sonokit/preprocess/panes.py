"""Multi-pane screens: two or more images side by side (dual view, raw + colour overlay) or stacked.

Sector detection assumes one imaging region; fed a two-pane screen it keeps one fan or squeezes both into one
square, and the same clip then gives different EFs from its AVI and from its two-pane export. So panes are found
first, and the caller refuses the file or keeps the pane the user picked.

Three cues, tried in order:

1. `regions`: a DICOM whose SequenceOfUltrasoundRegions holds two or more 2D tissue regions of similar size
   that do not overlap (how scanners describe dual mode). Exact, and works when the panes touch.
2. `gutter`: the changing (or, in a still, bright) pixels form two or more large separate regions of similar
   size along one axis, such as two fans with a dark gutter between them.
3. `repeat`: the fine texture (speckle) repeats at a shift of about 1/k of the frame: the same clip shown k
   times (raw + overlay, or a recoloured copy). Speckle of one image never matches itself at such a shift
   across the beam. Along depth it can: reverberation (a lung's A-lines) repeats the pleura at multiples of its
   depth, fainter each time. So a repeat down the screen counts only when it is near-exact and as bright as
   the first copy.

Two different views that touch with no gutter and no header regions are not detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from sonokit.errors import InputError
from sonokit.preprocess.frames import as_stack, gray_stack, image_shape

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)

# Panes of one layout have similar sizes: each bbox side within this factor of the largest pane's.
_SIZE_RATIO = 0.6
# A pane is a large region: at least this fraction of the frame.
_MIN_PANE_FRAC = 0.04
# Band-passed texture correlation at the pane shift above which the panes show the same images.
_REPEAT_CORR = 0.5
# Analysis size: the longer side of the downscaled copy (speckle survives, the work is bounded).
_WORK_SIDE = 320
_STD_THRESHOLD = 1.0
# Regions of one screen's panes overlap at least this much when placed at the same corner.
_SHAPE_IOU = 0.6
# Repeating panes span at least this fraction of the frame across the repeat axis.
_MIN_ACROSS = 0.4
# Stacked copies (repeat along depth) must match this well and keep this share of the first copy's brightness:
# reverberation artefacts (A-lines) repeat at 0.6-0.7 and fade with depth (simulated lung: 107 -> 59 grey).
_REPEAT_CORR_DEPTH = 0.8
_MIN_DEPTH_BRIGHTNESS = 0.8


@dataclass(frozen=True)
class PaneLayout:
    """Where the panes are, in the original frame's pixels, ordered left to right (or top to bottom)."""

    boxes: tuple[Box, ...]
    axis: Literal["x", "y"]
    cue: str

    @property
    def n(self) -> int:
        return len(self.boxes)

    def describe(self) -> str:
        side = "side by side" if self.axis == "x" else "stacked"
        return f"{self.n} panes {side} ({self.cue})"


def parse_pane(value: str | int | None) -> int | str | None:
    """`--pane` value: None (refuse multi-pane files), a 1-based pane number, or "all" (convert: one file each).

    left/top mean 1 and right/bottom mean the last pane (-1).
    """
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text == "all":
        return "all"
    if text in ("left", "top"):
        return 1
    if text in ("right", "bottom"):
        return -1
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise InputError(
        f"--pane must be a pane number (1, 2, ...), left, right, top, bottom or all; got {value!r}"
    )


def _split_points(spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Pane extents along the axis. Panes of one screen are drawn alike, so each region sits as far into its
    pane as the first does into the frame: cut there, kept inside the gap between the regions."""
    offset = spans[0][0]
    cuts = [0]
    for a, b in zip(spans, spans[1:], strict=False):
        cuts.append(min(max(b[0] - offset, a[1]), b[0]))
    cuts.append(length)
    return [(cuts[i], cuts[i + 1]) for i in range(len(spans))]


def _layout(spans: list[tuple[int, int]], axis: str, shape: tuple[int, int], cue: str) -> PaneLayout:
    h, w = shape
    length = w if axis == "x" else h
    parts = _split_points(sorted(spans), length)
    boxes = tuple((a, 0, b, h) if axis == "x" else (0, a, w, b) for a, b in parts)
    return PaneLayout(boxes, "x" if axis == "x" else "y", cue)


def _similar(boxes: list[Box]) -> bool:
    ws = [b[2] - b[0] for b in boxes]
    hs = [b[3] - b[1] for b in boxes]
    return min(ws) >= _SIZE_RATIO * max(ws) and min(hs) >= _SIZE_RATIO * max(hs)


def _arranged(boxes: list[Box], shape: tuple[int, int], cue: str) -> PaneLayout | None:
    """A layout when the boxes are similar and disjoint along x (side by side) or y (stacked)."""
    if len(boxes) < 2 or not _similar(boxes):
        return None
    for axis, lo, hi in (("x", 0, 2), ("y", 1, 3)):
        spans = sorted((b[lo], b[hi]) for b in boxes)
        if all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)):
            return _layout(spans, axis, shape, cue)
    return None


def panes_from_regions(regions: list[dict[str, Any]] | None, shape: tuple[int, int]) -> PaneLayout | None:
    """Panes from a DICOM's ultrasound regions (`Cine.meta["regions"]`): two or more similar 2D regions."""
    boxes = []
    for r in regions or []:
        if r.get("spatial_format") != 1 or not r.get("box"):
            continue
        x0, y0, x1, y1 = (int(v) for v in r["box"])
        if (x1 - x0 + 1) * (y1 - y0 + 1) >= _MIN_PANE_FRAC * shape[0] * shape[1]:
            boxes.append((x0, y0, x1 + 1, y1 + 1))
    return _arranged(boxes, shape, "regions")


def _work_copy(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(gray (F,h,w), colour (F,h,w,C) with C = 1 or 3, scale): a downscaled copy of up to 16 frames."""
    stack = as_stack(frames)
    if len(stack) > 16:
        stack = stack[np.linspace(0, len(stack) - 1, 16).round().astype(int)]
    h, w = stack.shape[1:3]
    scale = min(1.0, _WORK_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        stack = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in stack])
    colour = stack if stack.ndim == 4 else stack[..., None]
    if colour.shape[-1] == 3 and np.abs(colour.astype(np.int16) - colour[..., 1:2]).max() <= 3:
        colour = colour[..., 1:2]  # B-mode stored as RGB: one channel, a ninth of the correlation work
    return gray_stack(stack), colour, scale


def _signal_mask(gray: np.ndarray) -> np.ndarray:
    """Pixels that change across the cine (a still: brighter than the background), with text strokes opened
    away and cavities closed: one blob per imaging region."""
    k = max(3, int(round(min(gray.shape[1:]) / 30)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    if gray.shape[0] >= 2:
        g = gray.astype(np.float32)
        mean = g.mean(axis=0)
        std = np.sqrt(np.maximum((g * g).mean(axis=0) - mean * mean, 0.0))
        mask = (std > _STD_THRESHOLD).astype(np.uint8)
        if mask.mean() >= _MIN_PANE_FRAC:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel).astype(bool)
    img = gray.max(axis=0)
    lo = int(np.percentile(img, 1))
    mask = (img > lo + 8).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel).astype(bool)


def _gutter(mask: np.ndarray) -> list[Box]:
    """Bounding boxes of the large separate regions (each at least a quarter of the largest)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if n <= 2:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    big = [i + 1 for i, a in enumerate(areas) if a >= 0.25 * areas.max() and a >= _MIN_PANE_FRAC * mask.size]
    boxes = [
        (
            int(stats[i, cv2.CC_STAT_LEFT]),
            int(stats[i, cv2.CC_STAT_TOP]),
            int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH]),
            int(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT]),
        )
        for i in big
    ]
    # Panes of one screen have the same shape (the scanner draws each view alike); the tissue above and below a
    # dark vessel does not.
    shapes = [labels[y0:y1, x0:x1] == i for i, (x0, y0, x1, y1) in zip(big, boxes, strict=True)]
    return (
        boxes if len(shapes) >= 2 and all(_shape_iou(shapes[0], m) >= _SHAPE_IOU for m in shapes[1:]) else []
    )


def _shape_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks placed at the same top-left corner."""
    h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    pa = np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1])))
    pb = np.pad(b, ((0, h - b.shape[0]), (0, w - b.shape[1])))
    union = np.count_nonzero(pa | pb)
    return np.count_nonzero(pa & pb) / union if union else 0.0


def _dark_gaps(img: np.ndarray, boxes: list[Box], axis: str) -> bool:
    """Whether every gap between consecutive regions is background (a screen's gutter), not a dark structure
    inside one image (a vessel lumen, a fluid layer still holds some echoes)."""
    lo_level = int(np.percentile(img, 1))
    lo, hi = (0, 2) if axis == "x" else (1, 3)
    o_lo = min(b[1] if axis == "x" else b[0] for b in boxes)
    o_hi = max(b[3] if axis == "x" else b[2] for b in boxes)
    spans = sorted((b[lo], b[hi]) for b in boxes)
    for a, b in zip(spans, spans[1:], strict=False):
        if b[0] - a[1] < 1:
            return False
        band = img[o_lo:o_hi, a[1] : b[0]] if axis == "x" else img[a[1] : b[0], o_lo:o_hi]
        if band.size == 0 or np.percentile(band, 95) > lo_level + 8:
            return False
        # A screen's gutter is one flat level; a dark lumen or fluid layer still has speckle of a few levels.
        if np.mean(np.abs(band.astype(np.int16) - int(np.median(band))) <= 1) < 0.9:
            return False
    return True


def _texture(colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Band-passed frames, (F,h,w,C): speckle-scale detail without the brightness ramps every fan shares,
    zero outside the imaging region (burned-in text repeats too)."""
    g = colour.astype(np.float32)
    out = np.empty_like(g)
    for i in range(g.shape[0]):
        for c in range(g.shape[3]):
            f = g[i, :, :, c]
            out[i, :, :, c] = cv2.GaussianBlur(f, (0, 0), 0.8) - cv2.GaussianBlur(f, (0, 0), 3.0)
    keep = cv2.dilate(mask.view(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
    return out * keep[None, :, :, None]


def repeat_correlation(tex: np.ndarray, axis: int) -> np.ndarray:
    """r[s]: normalised correlation of the texture with itself shifted by s pixels along axis (1 = y, 2 = x),
    the best over channel pairs (a recoloured copy maps grey to colour channels)."""
    t = np.moveaxis(tex, axis, -2)  # (F, other, L, C)
    length = t.shape[-2]
    spec = np.fft.rfft(t, n=2 * length, axis=-2)
    energy = (t * t).sum(axis=(0, 1))  # (L, C)
    cum = np.concatenate([np.zeros((1, t.shape[-1])), np.cumsum(energy, axis=0)])  # (L+1, C)
    shifts = np.arange(length)
    head = cum[length - shifts]  # energy of t[:L-s] per channel
    tail = cum[length] - cum[shifts]  # energy of t[s:]
    best = np.zeros(length)
    for c1 in range(t.shape[-1]):
        for c2 in range(t.shape[-1]):
            cross = np.fft.irfft((np.conj(spec[..., c1]) * spec[..., c2]).sum(axis=(0, 1)), n=2 * length)
            den = np.sqrt(head[:, c1] * tail[:, c2])
            r = np.where(den > 0, cross[:length] / np.maximum(den, 1e-12), 0.0)
            best = np.maximum(best, r)
    return best


def repeat_shift(tex: np.ndarray, axis: int) -> tuple[int, float]:
    """The smallest shift between a quarter and three quarters of the frame at which the texture matches itself
    nearly as well as at the best such shift (3 panes repeat at 1/3 and 2/3), and that correlation."""
    r = repeat_correlation(tex, axis)
    length = len(r)
    lo, hi = max(2, int(length * 0.25)), int(length * 0.75) + 1
    window = r[lo:hi]
    if window.size == 0:
        return 0, 0.0
    top = float(window.max())
    s = lo + int(np.flatnonzero(window >= 0.9 * top)[0])
    # the local peak around the first strong shift
    s = max(range(max(lo, s - 3), min(hi, s + 4)), key=lambda k: r[k])
    return s, float(r[s])


def _repeat(colour: np.ndarray, mask: np.ndarray) -> tuple[list[Box], str] | None:
    """Pane boxes (work pixels) when the texture repeats along x or y."""
    h, w = mask.shape
    tex = _texture(colour, mask)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x_span, y_span = (int(xs.min()), int(xs.max()) + 1), (int(ys.min()), int(ys.max()) + 1)
    for axis, (lo, hi), (o_lo, o_hi), other in ((2, x_span, y_span, h), (1, y_span, x_span, w)):
        if o_hi - o_lo < _MIN_ACROSS * other:  # a header bar or a thin strip, not a row of images
            continue
        s, r = repeat_shift(tex, axis)
        if r < (_REPEAT_CORR if axis == 2 else _REPEAT_CORR_DEPTH) or s <= 0:
            continue
        k = max(2, int(round((hi - lo) / s)))
        width = min(s, hi - lo - (k - 1) * s)  # each pane's content: the last one ends where the signal does
        if width <= 0.5 * s:
            continue
        spans = [(lo + i * s, lo + i * s + width) for i in range(k)]
        if axis == 2:
            return [(a, 0, b, h) for a, b in spans], "x"
        level = [float(colour[:, a:b].mean()) for a, b in spans]
        if min(level[1:]) < _MIN_DEPTH_BRIGHTNESS * level[0]:  # fading copies: reverberation, not panes
            continue
        return [(0, a, w, b) for a, b in spans], "y"
    return None


def detect_panes(frames: np.ndarray, regions: list[dict[str, Any]] | None = None) -> PaneLayout | None:
    """The pane layout of a cine or image ((H,W), (H,W,3), (F,H,W) or (F,H,W,3) uint8); None for one pane."""
    shape = image_shape(frames)
    layout = panes_from_regions(regions, shape)
    if layout is not None:
        return layout
    gray, colour, scale = _work_copy(frames)
    mask = _signal_mask(gray)

    def back(boxes: list[Box]) -> list[Box]:
        return [tuple(int(round(v / scale)) for v in b) for b in boxes]  # type: ignore[misc]

    boxes = _gutter(mask)
    work = _arranged(boxes, mask.shape, "gutter") if boxes else None
    if work is not None and _dark_gaps(gray.max(axis=0), boxes, work.axis):
        return _arranged(back(boxes), shape, "gutter")
    found = _repeat(colour, mask)
    if found is not None:
        boxes, axis = found
        spans = [(b[0], b[2]) if axis == "x" else (b[1], b[3]) for b in back(boxes)]
        return _layout(spans, axis, shape, "repeat")
    return None


def crop_pane(frames: np.ndarray, box: Box) -> np.ndarray:
    """The frames cut to one pane's box (any supported layout; a view, no copy)."""
    x0, y0, x1, y1 = box
    stack = as_stack(frames)
    out = stack[:, y0:y1, x0:x1]
    return out if stack.ndim == frames.ndim else out[0]


def pick_pane(layout: PaneLayout | None, pane: int | str | None, what: str = "the file") -> Box | None:
    """The box of the chosen pane; None to use the whole frame. Refuses a multi-pane frame without a choice.

    The message is the reason only; the caller adds the file name.
    """
    if layout is None:
        if isinstance(pane, int) and pane not in (1, -1):
            raise InputError(f"--pane {pane}: {what} has a single pane")
        return None
    if pane is None:
        raise InputError(
            f"{layout.describe()}: a dual-view or image + overlay screen, which would be squeezed into one "
            f"square; pick one with --pane 1..{layout.n} (left to right, top to bottom)"
        )
    if pane == "all":
        raise InputError("--pane all splits files only in `sonokit convert`; pick one pane here")
    index = int(pane) - 1 if int(pane) > 0 else layout.n + int(pane)
    if not 0 <= index < layout.n:
        raise InputError(f"--pane {pane}: {what} has {layout.n} panes")
    return layout.boxes[index]
