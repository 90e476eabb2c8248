"""Find text-like marks burned in *inside* the imaging region, so de-identification never claims "no burned-in
annotation" while a name or a date may still sit on the image.

Masking blanks everything outside the sector; what the scanner wrote inside it stays. The check is deliberately
simple and errs towards "text found" (the safe side: BurnedInAnnotation then stays YES):

1. Overlay marks do not move. In a cine only pixels that are static across frames (temporal std below
   `STATIC_STD`) can be overlay; speckle moves. A single image has no such cue: every pixel is a candidate.
2. Glyph strokes are thin and bright (or strongly coloured) against their surroundings: a white top-hat with a
   kernel a little wider than a stroke keeps them and drops broad tissue, and they are near white
   (`BRIGHT_MIN`); coloured overlay (yellow, green, cyan
   text on a grey image) is found by its chroma.
3. Text is a row of glyphs: connected components of glyph size (`GLYPH_HEIGHT` px tall) whose centres lie on one
   line with letter-sized gaps. `MIN_GLYPHS_IN_LINE` of them make a line of text.

It is a heuristic: it finds typed labels, dates and names on ultrasound frames (tests: `cv2.putText` inside a
real fan is found, the real fans without text are not flagged), not every possible mark.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sonokit.preprocess.frames import as_stack

STATIC_STD = (
    6.0  # grey levels: JPEG noise and anti-aliasing on a static glyph stay below it; speckle exceeds it
)
TOPHAT_MIN = 60  # a stroke is at least this much brighter than its neighbourhood
BRIGHT_MIN = 160  # and bright in itself: overlay text is drawn near white, speckle mostly stays below
CHROMA_MIN = 80  # max - min channel: saturated overlay colour in a grey ultrasound image
GLYPH_HEIGHT = (5, 40)  # px: the height range of one character on scanner screens
MIN_GLYPHS_IN_LINE = 3
_MAX_FRAMES = 16  # frames sampled for the static test


@dataclass(frozen=True)
class TextFinding:
    """What the check saw: `found` when at least one line of glyphs lies inside the mask."""

    found: bool
    glyphs: int  # glyph-sized components inside the mask
    lines: int  # lines of at least MIN_GLYPHS_IN_LINE glyphs
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) of the first line, for a report or a test


def _sample(stack: np.ndarray) -> np.ndarray:
    if len(stack) <= _MAX_FRAMES:
        return stack
    return stack[np.linspace(0, len(stack) - 1, _MAX_FRAMES).round().astype(int)]


def _stroke_candidates(stack: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that are static (in a cine) and bright-thin or strongly coloured."""
    frames = _sample(stack)
    colour = frames.ndim == 4
    gray = (np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]) if colour else frames).astype(
        np.float32
    )
    base = np.median(gray, axis=0).astype(np.uint8) if len(gray) > 1 else gray[0].astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    marks = (cv2.morphologyEx(base, cv2.MORPH_TOPHAT, kernel) >= TOPHAT_MIN) & (base >= BRIGHT_MIN)
    if colour:
        ref = np.median(frames, axis=0) if len(frames) > 1 else frames[0]
        chroma = ref.max(axis=-1).astype(np.int16) - ref.min(axis=-1).astype(np.int16)
        marks |= chroma >= CHROMA_MIN
    if len(gray) > 1:
        marks &= gray.std(axis=0) < STATIC_STD
    return marks


def _lines(boxes: list[tuple[int, int, int, int]]) -> list[list[tuple[int, int, int, int]]]:
    """Group glyph boxes (x, y, w, h) into rows: centres within half a glyph height, gaps under 1.5 heights."""
    rows: list[list[tuple[int, int, int, int]]] = []
    for box in sorted(boxes):
        x, y, w, h = box
        cy = y + h / 2
        for row in rows:
            px, py, pw, ph = row[-1]
            size = max(h, ph)
            if abs((py + ph / 2) - cy) <= size / 2 and 0 <= x - (px + pw) <= 1.5 * size:
                row.append(box)
                break
        else:
            rows.append([box])
    return [row for row in rows if len(row) >= MIN_GLYPHS_IN_LINE]


def find_text(frames: np.ndarray, mask: np.ndarray) -> TextFinding:
    """Look for lines of burned-in glyphs inside `mask` in (H,W), (H,W,3), (F,H,W) or (F,H,W,3) uint8 frames."""
    stack = as_stack(np.asarray(frames))
    inside = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # not the fan's own edge
    marks = (_stroke_candidates(stack) & inside).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(marks, connectivity=8)
    lo, hi = GLYPH_HEIGHT
    glyphs = [
        (int(x), int(y), int(w), int(h))
        for x, y, w, h, area in stats[1:]
        if lo <= h <= hi and w <= 1.5 * hi and area >= 6
    ]
    lines = _lines(glyphs)
    box = None
    if lines:
        xs = [b[0] for b in lines[0]] + [b[0] + b[2] for b in lines[0]]
        ys = [b[1] for b in lines[0]] + [b[1] + b[3] for b in lines[0]]
        box = (min(xs), min(ys), max(xs), max(ys))
    return TextFinding(bool(lines), len(glyphs), len(lines), box)
