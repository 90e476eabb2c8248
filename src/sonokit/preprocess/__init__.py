"""Preprocessing: find the ultrasound sector, blank what lies outside it, crop and resize to a square.

geometry = detect_sector(frames)                  # fan / rectangle / region, with mask and bbox
clean = apply_mask(frames, geometry)              # burned-in text outside the fan is gone
square, transform = crop_square(frames, geometry, 112)
transform.to_original(points_on_square)           # back to the scanner's pixels
"""

from sonokit.preprocess.crop import CropTransform, crop_square, preprocess_cine
from sonokit.preprocess.sector import (
    SectorGeometry,
    apply_mask,
    detect_sector,
    mask_bbox,
    render_rect,
    render_sector,
)

__all__ = [
    "CropTransform",
    "SectorGeometry",
    "apply_mask",
    "crop_square",
    "detect_sector",
    "mask_bbox",
    "preprocess_cine",
    "render_rect",
    "render_sector",
]
