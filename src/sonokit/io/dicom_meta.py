"""What a DICOM header says about geometry and timing, and a summary of it that is safe to show or log.

The summary is built from an allow-list of technical attributes, so no patient, operator or institution
identifier can reach `Cine.meta`, `sonokit info` or a log line, whatever the scanner put in the header.
"""

from __future__ import annotations

import math
from typing import Any

from sonokit.utils.logs import get_logger

log = get_logger(__name__)

CM_UNITS = 3  # PhysicalUnitsX/YDirection code for centimetres (PS3.3 C.8.5.5.1.15)
TISSUE_2D = 1  # RegionSpatialFormat 1: a 2D (B-mode) region
REGION_FORMATS = {0: "none", 1: "2D", 2: "M-mode", 3: "spectral", 4: "waveform", 5: "graphics"}


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None  # NaN and infinity are no value (inf spacing, inf frame time)


def _first(value: Any) -> Any:
    # Multi-valued elements (WindowCenter "40\\400") arrive as MultiValue; the first value is the default.
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def regions(ds: Any) -> list[dict[str, Any]]:
    """The SequenceOfUltrasoundRegions (0018,6011) as plain dicts; box is (x0, y0, x1, y1), inclusive pixels."""
    out = []
    for item in ds.get("SequenceOfUltrasoundRegions", None) or []:
        box = [
            item.get(k)
            for k in (
                "RegionLocationMinX0",
                "RegionLocationMinY0",
                "RegionLocationMaxX1",
                "RegionLocationMaxY1",
            )
        ]
        spatial = item.get("RegionSpatialFormat")
        out.append(
            {
                "spatial_format": int(spatial) if spatial is not None else None,
                "spatial_format_name": REGION_FORMATS.get(int(spatial), "other")
                if spatial is not None
                else None,
                "data_type": int(item.get("RegionDataType"))
                if item.get("RegionDataType") is not None
                else None,
                "box": [int(v) for v in box] if all(v is not None for v in box) else None,
                "units_x": int(item.get("PhysicalUnitsXDirection"))
                if item.get("PhysicalUnitsXDirection") is not None
                else None,
                "units_y": int(item.get("PhysicalUnitsYDirection"))
                if item.get("PhysicalUnitsYDirection") is not None
                else None,
                "delta_x": _float(item.get("PhysicalDeltaX")),
                "delta_y": _float(item.get("PhysicalDeltaY")),
            }
        )
    return out


def tissue_region(ds: Any) -> dict[str, Any] | None:
    """The 2D region with centimetre units and the largest area (the B-mode image on dual or Doppler screens)."""
    best, best_area = None, -1
    for region in regions(ds):
        if region["spatial_format"] != TISSUE_2D or region["box"] is None:
            continue
        if region["units_x"] != CM_UNITS or region["units_y"] != CM_UNITS:
            continue
        if not (region["delta_x"] or 0) > 0 or not (region["delta_y"] or 0) > 0:
            continue
        x0, y0, x1, y1 = region["box"]
        area = max(0, x1 - x0 + 1) * max(0, y1 - y0 + 1)
        if area > best_area:
            best, best_area = region, area
    return best


def _plausible(mm: float) -> bool:
    """A pixel of an ultrasound image is between 1 micrometre and 10 cm; anything else is a broken header."""
    return 1e-3 <= mm <= 100.0


def spacing_mm(ds: Any) -> tuple[tuple[float, float] | None, str | None, str | None]:
    """(dy, dx) in mm per pixel, where it came from, and a note when a header value could not be trusted.

    The 2D tissue region of SequenceOfUltrasoundRegions comes first (PhysicalDeltaY/X in cm); PixelSpacing
    (mm, row then column) is the fallback. A region whose box lies outside the pixel matrix means the image
    was resized after acquisition, so its deltas no longer describe these pixels: spacing is then unknown.
    A box reaching one pixel past the edge (x1 == Columns, as some scanners write) is accepted.
    """
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    region = tissue_region(ds)
    if region is not None:
        x0, y0, x1, y1 = region["box"]
        if x1 <= cols and y1 <= rows and x0 >= 0 and y0 >= 0:
            dy, dx = region["delta_y"] * 10.0, region["delta_x"] * 10.0
            if not (_plausible(dy) and _plausible(dx)):
                return None, None, f"ultrasound region spacing {dy:.3g} x {dx:.3g} mm is implausible"
            return (dy, dx), "ultrasound_region", None
        note = (
            f"ultrasound region box {region['box']} lies outside the {cols}x{rows} image "
            "(resized after acquisition?)"
        )
        return None, None, note
    spacing = ds.get("PixelSpacing", None)
    if spacing is not None and len(spacing) == 2:
        dy, dx = _float(spacing[0]), _float(spacing[1])
        if dy and dx and _plausible(dy) and _plausible(dx):
            return (dy, dx), "PixelSpacing", None
    return None, None, None


def frame_rate(ds: Any) -> tuple[float | None, str | None]:
    """Frames per second and the attribute it came from.

    Acquisition timing (FrameTime, then the mean of FrameTimeVector) comes before CineRate and
    RecommendedDisplayFrameRate, which describe playback and may differ from how fast the heart was sampled.
    """
    frame_time = _float(ds.get("FrameTime", None))
    if frame_time and frame_time > 0:
        return 1000.0 / frame_time, "FrameTime"
    vector = ds.get("FrameTimeVector", None)
    if vector is not None and len(vector) > 1:
        # The first entry is the (zero) increment before frame 1; the others are the intervals between frames.
        steps = [v for v in (_float(x) for x in list(vector)[1:]) if v and v > 0]
        if steps:
            return 1000.0 / (sum(steps) / len(steps)), "FrameTimeVector"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _float(ds.get(keyword, None))
        if rate and rate > 0:
            return rate, keyword
    return None, None


def _str(ds: Any, keyword: str) -> str | None:
    value = _first(ds.get(keyword, None))
    return str(value).strip() if value not in (None, "") else None


def summary(ds: Any) -> dict[str, Any]:
    """A de-identified technical summary of a DICOM header (allow-list: no names, IDs, dates, UIDs or places)."""
    from pydicom.uid import UID

    file_meta = getattr(ds, "file_meta", None)
    tsyntax = file_meta.get("TransferSyntaxUID", None) if file_meta is not None else None
    sop_class = ds.get("SOPClassUID", None)
    frame_time = _float(ds.get("FrameTime", None))
    return {
        "format": "dicom",
        "modality": _str(ds, "Modality"),
        "sop_class": UID(sop_class).name if sop_class else None,
        "manufacturer": _str(ds, "Manufacturer"),
        "model": _str(ds, "ManufacturerModelName"),
        "photometric_interpretation": _str(ds, "PhotometricInterpretation"),
        "transfer_syntax": UID(tsyntax).name if tsyntax else None,
        "transfer_syntax_uid": str(tsyntax) if tsyntax else None,
        "rows": int(ds.get("Rows", 0) or 0),
        "columns": int(ds.get("Columns", 0) or 0),
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1) or 1),
        "bits_allocated": int(ds.get("BitsAllocated", 0) or 0),
        "bits_stored": int(ds.get("BitsStored", 0) or 0),
        "number_of_frames": int(ds.get("NumberOfFrames", 1) or 1) if "NumberOfFrames" in ds else 1,
        "burned_in_annotation": _str(ds, "BurnedInAnnotation"),
        "lossy_compression": _str(ds, "LossyImageCompression"),
        "patient_identity_removed": _str(ds, "PatientIdentityRemoved"),
        "frame_time_ms": frame_time,
        "regions": regions(ds),
    }
