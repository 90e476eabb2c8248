"""What the user picked in the sidebar: which runs to load (Selection) and how to analyse (Options).

Both are frozen so the page can use them as cache keys; every system module reads Options, nothing else does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    """The run folders picked in the sidebar (None / empty: that system is not run)."""

    ef: str | None = None  # an `ef` (video) run
    lv: str | None = None  # an `lv-seg` or `lv-trace` run
    classifiers: tuple[str, ...] = ()  # fetal-plane, lus, classify ... runs
    quality: str | None = None
    av_detect: str | None = None
    av_calcification: str | None = None

    def is_empty(self) -> bool:
        return not (self.ef or self.lv or self.classifiers or self.quality or self.av_detect)


@dataclass(frozen=True)
class Options:
    """The sidebar's options; frames/period None keep the EF model's own clip sampling."""

    thresholds: str = "default"
    ef_headline: str = "video"  # which model gives the headline EF when both are chosen: "video" or "lv"
    frames: int | None = None
    period: int | None = None
    alpha: float = 0.1  # the EF interval's; classifier sets keep the level `sonokit uncertainty` fitted
    top_k: int = 3
    n_similar: int = 5
    quality_threshold: float = 0.5
    av_threshold: float | None = None  # valve detection score threshold (None: the detector run's own)
    gradcam: bool = True
    similar: bool = True
