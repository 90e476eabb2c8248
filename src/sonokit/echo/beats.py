"""ED/ES frames and per-beat EF from an LV size curve (area or volume per frame).

End-diastole is the largest LV in a beat and end-systole the smallest, so ED/ES are the peaks and troughs of the
curve. A beat is an ED peak followed by the deepest trough before the next peak.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

from sonokit.errors import InputError


@dataclass(frozen=True)
class Beat:
    ed: int  # frame index of end-diastole
    es: int  # frame index of end-systole

    def ef(self, size: np.ndarray) -> float:
        """EF (%) of this beat from a volume curve (from an area curve this is the fractional area change)."""
        return float((size[self.ed] - size[self.es]) / size[self.ed] * 100.0)


def find_beats(
    size: np.ndarray,
    fps: float | None = None,
    min_beat_s: float = 0.33,
    min_prominence: float = 0.08,
    edge_tolerance: float = 0.1,
    min_drop: float = 0.4,
) -> list[Beat]:
    """Beats of a cine from its LV size curve.

    `min_beat_s` bounds the heart rate (0.33 s = 180 bpm); `min_prominence` is a fraction of the curve's range,
    which keeps speckle jitter from counting as a beat. Without fps, 50 fps (EchoNet) is assumed.

    A cine cut mid-cycle starts or ends with a partial beat: its first frame looks like a peak and its last like
    a trough, and their "EF" is too low. An extremum on the first or last frame therefore counts only when it is
    as extreme as the interior ones (within `edge_tolerance` of the curve's range); with no interior peak or
    trough to compare with (a cine of about one beat), it counts.

    A bump in diastole (the atrial kick, or an outline that wobbles as the mitral valve opens) can pass for a
    peak: its "beat" falls from the bump to the next dip and its EF is near 0. A beat counts only when its fall
    (ED minus ES on the smoothed curve) is at least `min_drop` of the largest beat's fall.
    """
    size = np.asarray(size, dtype=np.float64)
    if size.ndim != 1 or len(size) < 3:
        raise InputError(f"an LV size curve needs at least 3 frames, got shape {size.shape}")
    if not np.all(np.isfinite(size)):
        raise InputError("the LV size curve contains NaN or infinite values")
    span = float(size.max() - size.min())
    if span <= 0:
        return []
    smooth = uniform_filter1d(size, size=3, mode="nearest")
    distance = max(1, int(round(min_beat_s * (fps or 50.0))))
    prominence = min_prominence * span
    peaks, _ = find_peaks(np.pad(smooth, 1, mode="minimum"), distance=distance, prominence=prominence)
    peaks = peaks - 1
    troughs, _ = find_peaks(np.pad(-smooth, 1, mode="minimum"), distance=distance, prominence=prominence)
    troughs = troughs - 1
    peaks = _drop_partial_edges(peaks, smooth, edge_tolerance * span, high=True)
    troughs = _drop_partial_edges(troughs, smooth, edge_tolerance * span, high=False)
    beats: list[Beat] = []
    for i, ed in enumerate(peaks):
        end = peaks[i + 1] if i + 1 < len(peaks) else len(size)
        inside = troughs[(troughs > ed) & (troughs < end)]
        if len(inside) == 0:
            continue
        es = int(inside[np.argmin(smooth[inside])])
        beats.append(Beat(ed=int(ed), es=es))
    drops = np.array([smooth[b.ed] - smooth[b.es] for b in beats])
    return [b for b, d in zip(beats, drops, strict=True) if d >= min_drop * drops.max()] if beats else []


def _drop_partial_edges(extrema: np.ndarray, curve: np.ndarray, tol: float, high: bool) -> np.ndarray:
    """Peaks (high) or troughs on the first / last frame that are less extreme than the interior ones."""
    last = len(curve) - 1
    inner = extrema[(extrema > 0) & (extrema < last)]
    if len(inner) == 0:
        return extrema
    ref = float(np.median(curve[inner]))
    keep = [e for e in extrema if 0 < e < last or (curve[e] >= ref - tol if high else curve[e] <= ref + tol)]
    return np.asarray(keep, dtype=extrema.dtype)


def beat_efs(volume: np.ndarray, beats: list[Beat]) -> np.ndarray:
    """EF per beat from a volume curve."""
    volume = np.asarray(volume, dtype=np.float64)
    return np.array([b.ef(volume) for b in beats], dtype=np.float64)


def join_values(values: Sequence[Any], fmt: str = "{}") -> str:
    """A list for one CSV cell, ";"-joined (the ED frames or EFs of every beat); a non-finite float is "nan"."""
    return ";".join("nan" if isinstance(v, float) and not math.isfinite(v) else fmt.format(v) for v in values)


def finite_mean(values: Sequence[float]) -> float:
    """The mean of the finite values (a beat that could not be measured is NaN), NaN when there is none."""
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
