"""Leakage traps in a dataset index: masks among the inputs, near-duplicates across splits, per-file groups.

Three ways a score looks better than it is without any error: segmentation masks stored next to the images get
indexed as images (a breast folder with `*_mask.png` files); the same image (or a re-saved copy, or the next
frame of the same sweep) sits in train and in test; and a table without a patient column makes every file its own
group, so splits and bootstrap CIs are per image although several images may come from one patient.

Pixels are read from thumbnails the caller already has (the preprocessed cache training uses anyway), so these
checks cost a memory map per file, not another decode. Near-duplicates use a 64-bit DCT perceptual hash (pHash):
two images whose hashes differ in at most `max_distance` bits are called near-duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sonokit.data.tables import IMAGE_EXTS, VIDEO_EXTS, path_stem

#: words in a file name (as whole tokens) that mark a mask or annotation rather than an image
_MASK_TOKENS = re.compile(
    r"(?:^|[^a-z])(?:seg|segm|segmentation|annotation|annot|gt|groundtruth|ground_truth)(?:[^a-z]|$)"
)
#: folder names that hold masks or annotations
_MASK_FOLDERS = frozenset(
    {"mask", "masks", "segmentation", "segmentations", "annotation", "annotations", "gt", "groundtruth"}
)
#: share of a thumbnail's pixels at its two most frequent grey levels above which it counts as binary
TWO_LEVEL_SHARE = 0.90
#: default Hamming distance (of 64 bits) up to which two pHashes are near-duplicates
MAX_DISTANCE = 6


def mask_like_name(path: str | Path) -> bool:
    """True for names such as `x_mask.png`, `mask_0001.png`, `x_seg.png`, `x_Annotation.png`, `masks/x.png`."""
    p = Path(path)
    stem = p.stem.lower()
    return "mask" in stem or bool(_MASK_TOKENS.search(stem)) or p.parent.name.lower() in _MASK_FOLDERS


def two_level(gray: np.ndarray, share: float = TWO_LEVEL_SHARE) -> bool:
    """True when (nearly) every pixel takes one of two grey levels: a binary mask, not a B-mode image.

    "Nearly": a mask resized to a thumbnail gets intermediate values along its edges.
    """
    if gray.size == 0:
        return False
    counts = np.bincount(np.asarray(gray, dtype=np.uint8).ravel(), minlength=256)
    top2 = np.partition(counts, -2)[-2:].sum()
    return bool(top2 >= share * gray.size)


def phash(gray: np.ndarray) -> np.uint64:
    """64-bit DCT perceptual hash: 32x32 grey thumbnail, 2D DCT, the 8x8 lowest frequencies above their median."""
    import cv2

    small = cv2.resize(np.asarray(gray, dtype=np.uint8), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small.astype(np.float32))[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term (overall brightness) does not set the threshold
    return np.packbits(bits).view(">u8")[0].astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances (len(a), len(b)) between uint64 hashes."""
    return np.bitwise_count(np.bitwise_xor(a[:, None], b[None, :])).astype(np.uint8)


@dataclass(frozen=True)
class NearDuplicates:
    """Query items with a near-duplicate among the reference items: how many, and one example pair."""

    count: int
    example: tuple[int, int] | None  # (query index, reference index) of the closest pair
    distance: int | None


def near_duplicates(
    query: np.ndarray, reference: np.ndarray, max_distance: int = MAX_DISTANCE, chunk: int = 2048
) -> NearDuplicates:
    """Count query hashes within `max_distance` bits of any reference hash (chunked: 10,000 x 10,000 is fine)."""
    query, reference = np.asarray(query, np.uint64), np.asarray(reference, np.uint64)
    if len(query) == 0 or len(reference) == 0:
        return NearDuplicates(0, None, None)
    best = np.empty(len(query), dtype=np.uint8)
    best_ref = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), chunk):
        d = hamming(query[start : start + chunk], reference)
        best_ref[start : start + chunk] = d.argmin(axis=1)
        best[start : start + chunk] = d.min(axis=1)
    hit = best <= max_distance
    if not hit.any():
        return NearDuplicates(0, None, None)
    q = int(np.flatnonzero(hit)[np.argmin(best[hit])])
    return NearDuplicates(int(hit.sum()), (q, int(best_ref[q])), int(best[q]))


@dataclass(frozen=True)
class Thumbnails:
    """Per file: its pHash and whether its pixels are two-level (mask-like)."""

    hashes: np.ndarray  # uint64
    two_level: np.ndarray  # bool


def content_region(thumb: np.ndarray, height: int | None, width: int | None) -> np.ndarray:
    """The part of a letterboxed thumbnail that holds the image (the zero padding would look like a mask)."""
    if not height or not width:
        return thumb
    size = thumb.shape[0]
    scale = size / max(height, width)
    nh, nw = max(1, round(height * scale)), max(1, round(width * scale))
    top, left = (size - nh) // 2, (size - nw) // 2
    return thumb[top : top + nh, left : left + nw]


def describe_thumbnails(paths: Sequence[str], read: Callable[[str], tuple[np.ndarray, dict]]) -> Thumbnails:
    """pHash and two-level flag of each file, from `read(path) -> (frames (F, S, S[, C]) uint8, meta)`.

    The middle frame stands for a video. `meta` may give the original `height` and `width` (letterbox geometry).
    """
    import cv2

    hashes = np.zeros(len(paths), dtype=np.uint64)
    flags = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        frames, meta = read(path)
        frame = np.asarray(frames[len(frames) // 2])
        if frame.ndim == 3:
            frame = (
                frame[:, :, 0] if frame.shape[2] == 1 else cv2.cvtColor(frame[:, :, :3], cv2.COLOR_RGB2GRAY)
            )
        hashes[i] = phash(frame)
        flags[i] = two_level(content_region(frame, meta.get("height"), meta.get("width")))
    return Thumbnails(hashes, flags)


def file_unit(paths: Sequence[str] | pd.Series) -> str:
    """What one file is: "images", "videos" or (a mix, or DICOM that may be either) "files"."""
    exts = {Path(p).suffix.lower() for p in pd.unique(pd.Series(paths, dtype=object).astype(str))}
    if exts and exts <= IMAGE_EXTS:
        return "images"
    if exts and exts <= VIDEO_EXTS:
        return "videos"
    return "files"


def per_file_groups(index: pd.DataFrame) -> bool:
    """True when the groups are the files themselves (no patient column: readers then use the file stem)."""
    if "group" not in index.columns:
        return True
    if index.empty:
        return False
    return bool((index["group"].astype(str) == index["path"].astype(str).map(path_stem)).all())


def resample_unit(index: pd.DataFrame) -> str:
    """What a group of this index is, in words for metrics: "patients" only when a group column was given."""
    return file_unit(index["path"]) if per_file_groups(index) else "patients"
