"""Clinical measurements: Simpson's LV volumes, ejection fraction and heart-function classes."""

from sonokit.clinical.classes import PRESETS, Band, EFThresholds, get_thresholds, heart_function_class
from sonokit.clinical.simpson import (
    ejection_fraction,
    rasterize_tracing,
    tracing_from_mask,
    tracing_polygon,
    volume_from_mask,
    volume_from_tracing,
)

__all__ = [
    "PRESETS",
    "Band",
    "EFThresholds",
    "ejection_fraction",
    "get_thresholds",
    "heart_function_class",
    "rasterize_tracing",
    "tracing_from_mask",
    "tracing_polygon",
    "volume_from_mask",
    "volume_from_tracing",
]
