"""Heart-function classes from the ejection fraction, with selectable guideline cut-offs.

Guidelines disagree at the margins (is EF 50 normal?), so each preset is an ordered list of bands, highest
first, each with its lower bound and whether the bound itself belongs to the band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from sonokit.errors import InputError


class Band(NamedTuple):
    """EF values above `lower` (or equal to it when `inclusive`) belong to `label`, unless a higher band took them."""

    label: str
    lower: float
    inclusive: bool = True


@dataclass(frozen=True)
class EFThresholds:
    """Named EF cut-offs. With no `bands`, three are built: normal > normal_above, reduced < reduced_below,
    mildly reduced in between (both ends inclusive), the project's default convention."""

    name: str
    normal_above: float
    reduced_below: float
    bands: tuple[Band, ...] = ()

    def __post_init__(self) -> None:
        if self.reduced_below > self.normal_above:
            raise InputError(
                f"EF thresholds {self.name!r}: reduced_below {self.reduced_below} > normal_above {self.normal_above}"
            )
        bands = self.bands or (
            Band("normal", self.normal_above, False),
            Band("mildly reduced", self.reduced_below, True),
            Band("reduced", -math.inf, True),
        )
        bands = tuple(Band(*b) for b in bands)
        lowers = [b.lower for b in bands]
        if lowers != sorted(lowers, reverse=True) or len(set(lowers)) != len(lowers):
            raise InputError(
                f"EF thresholds {self.name!r}: band lower bounds must strictly decrease, got {lowers}"
            )
        if bands[-1].lower != -math.inf:
            bands = (*bands[:-1], Band(bands[-1].label, -math.inf, True))
        object.__setattr__(self, "bands", bands)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names from the best function to the worst."""
        return tuple(b.label for b in self.bands)

    def classify(self, ef: float) -> str:
        ef = float(ef)
        if not math.isfinite(ef):
            raise InputError(f"ejection fraction must be a finite number, got {ef}")
        for band in self.bands:
            if ef > band.lower or (band.inclusive and ef == band.lower):
                return band.label
        return self.bands[-1].label


PRESETS: dict[str, EFThresholds] = {
    # project default (DESIGN.md): normal > 50, mildly reduced 40-50, reduced < 40
    "default": EFThresholds("default", normal_above=50.0, reduced_below=40.0),
    # 2022 AHA/ACC/HFSA heart-failure guideline: HFrEF <= 40, HFmrEF 41-49, HFpEF >= 50
    "aha2022": EFThresholds(
        "aha2022",
        normal_above=50.0,
        reduced_below=40.0,
        bands=(
            Band("preserved", 50.0, True),
            Band("mildly reduced", 40.0, False),
            Band("reduced", -math.inf, True),
        ),
    ),
    # British Society of Echocardiography 2020: normal >= 55, borderline low 50-54, impaired 36-49,
    # severely impaired <= 35
    "bse": EFThresholds(
        "bse",
        normal_above=55.0,
        reduced_below=50.0,
        bands=(
            Band("normal", 55.0, True),
            Band("borderline low", 50.0, True),
            Band("impaired", 35.0, False),
            Band("severely impaired", -math.inf, True),
        ),
    ),
}


def get_thresholds(thresholds: str | EFThresholds = "default") -> EFThresholds:
    """Resolve a preset name (or pass an EFThresholds through)."""
    if isinstance(thresholds, EFThresholds):
        return thresholds
    key = str(thresholds).lower()
    if key not in PRESETS:
        raise InputError(f"unknown EF thresholds {thresholds!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


def heart_function_class(ef: float, thresholds: str | EFThresholds = "default") -> str:
    """The heart-function class label of an EF (percent) under a preset name or custom thresholds."""
    return get_thresholds(thresholds).classify(ef)
