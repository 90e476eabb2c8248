"""Encode the pixels of a de-identified DICOM file so that masking does not blow a compressed cine up 20-fold.

A compressed input whose pixels were masked is re-encoded, not written raw (a 6 MB JPEG cine decoded to 110 MB):

- `auto` (default): compressed input -> JPEG 2000 Lossless (colour with the reversible colour transform,
  YBR_RCT; pylibjpeg-openjpeg), or RLE Lossless (built into pydicom) where no JPEG 2000 encoder is installed;
  uncompressed input stays uncompressed. Lossless: the masked frames are stored exactly.
- `jpeg2000`, `rle`, `none` (uncompressed): that one, whatever the input.
- `jpeg`: JPEG Baseline at the stated `quality` (Pillow/libjpeg, 4:2:2 chroma for colour): lossy, smaller;
  LossyImageCompression, its method and ratio are recorded as the standard asks.

Unchanged pixels are never re-encoded: the caller keeps the input's bytes and transfer syntax.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np

from sonokit.errors import InputError

CODECS = ("auto", "jpeg2000", "rle", "jpeg", "none")
# Syntaxes that are lossy by definition: a lossless re-encoding of their pixels still carries that history.
_LOSSY = {"1.2.840.10008.1.2.4.50": "ISO_10918_1", "1.2.840.10008.1.2.4.51": "ISO_10918_1"}


def _j2k_available() -> bool:
    from pydicom.pixels import get_encoder
    from pydicom.uid import JPEG2000Lossless

    return bool(get_encoder(JPEG2000Lossless).is_available)


def output_syntax(codec: str, input_syntax: Any) -> Any:
    """The transfer syntax masked pixels are written with, for the `codec` option and the input's syntax."""
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    if codec not in CODECS:
        raise InputError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    if codec == "auto":
        if not input_syntax.is_compressed:
            return ExplicitVRLittleEndian
        codec = "jpeg2000" if _j2k_available() else "rle"
    if codec == "jpeg2000" and not _j2k_available():
        raise InputError("no JPEG 2000 encoder installed (pip install pylibjpeg-openjpeg); use --codec rle")
    return {
        "jpeg2000": JPEG2000Lossless,
        "rle": RLELossless,
        "jpeg": JPEGBaseline8Bit,
        "none": ExplicitVRLittleEndian,
    }[codec]


def mark_lossy_history(ds: Any, input_syntax: Any) -> None:
    """Pixels that were once lossy-compressed stay marked as such, even when stored losslessly now."""
    method = _LOSSY.get(str(input_syntax))
    if method and ds.get("LossyImageCompression") != "01":
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = method


def _jpeg_frames(frames: np.ndarray, quality: int) -> list[bytes]:
    from PIL import Image

    out = []
    for frame in frames:
        buf = io.BytesIO()
        # subsampling=1 is 4:2:2, what YBR_FULL_422 declares; no EXIF, no comment
        Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality), subsampling=1, optimize=True)
        out.append(buf.getvalue())
    return out


def encode_pixels(ds: Any, frames: np.ndarray, syntax: Any, quality: int = 95) -> None:
    """Compress the uncompressed uint8 pixels already set on `ds` (`frames`: (F,H,W) or (F,H,W,3)) to `syntax`."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    colour = frames.ndim == 4
    if syntax == JPEG2000Lossless:
        logging.getLogger("openjpeg").setLevel(logging.WARNING)  # one INFO line per encoded tile otherwise
        if colour:
            ds.PhotometricInterpretation = "YBR_RCT"  # the reversible colour transform: ~2.6x smaller here
        ds.compress(JPEG2000Lossless, use_mct=colour, generate_instance_uid=False)
    elif syntax == RLELossless:
        ds.compress(RLELossless, generate_instance_uid=False)
    elif syntax == JPEGBaseline8Bit:
        if not 1 <= quality <= 100:
            raise InputError(f"JPEG quality must be 1-100, got {quality}")
        encoded = _jpeg_frames(frames, quality)
        ds.PixelData = encapsulate(encoded, has_bot=True)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        if colour:
            ds.PhotometricInterpretation = "YBR_FULL_422"
            ds.PlanarConfiguration = 0
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ratio = frames.nbytes / max(1, sum(len(b) for b in encoded))
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = [*_values(ds, "LossyImageCompressionRatio"), f"{ratio:.2f}"]
        ds.LossyImageCompressionMethod = [*_values(ds, "LossyImageCompressionMethod"), "ISO_10918_1"]


def _values(ds: Any, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return [value] if isinstance(value, (str, float, int)) else list(value)


# JPEG segments that carry text or foreign metadata, never pixels: APP1-APP13 and APP15 (EXIF, XMP, ICC,
# vendor blocks) and COM. APP0 (JFIF) and APP14 (Adobe: says how colour was transformed) stay.
_JPEG_DROP = {*range(0xE1, 0xEE), 0xEF, 0xFE}


def _strip_jpeg(data: bytes) -> bytes:
    out, pos = bytearray(data[:2]), 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data follows, copied as it is
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker not in _JPEG_DROP:
            out += data[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out + data[pos:])


def _strip_j2k(data: bytes) -> bytes:
    """Drop COM segments (encoder names, free text) from a JPEG 2000 codestream's main header."""
    out, pos = bytearray(data[:2]), 2
    while pos + 4 <= len(data):
        marker = int.from_bytes(data[pos : pos + 2], "big")
        if marker == 0xFF90:  # first tile-part: the main header ends
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker != 0xFF64:
            out += data[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out + data[pos:])


def strip_stream_text(frame: bytes) -> bytes:
    """A compressed frame without its comment and application segments (JPEG family, JPEG 2000 codestream);
    other streams are returned as they are. The coded pixels are not touched."""
    if frame[:2] == b"\xff\xd8":
        return _strip_jpeg(frame)
    if frame[:4] == b"\xff\x4f\xff\x51":
        return _strip_j2k(frame)
    return frame


def strip_encapsulated_text(ds: Any, n_frames: int) -> int:
    """Remove text segments from every frame of `ds`'s encapsulated pixel data; returns the bytes removed.

    A compressed stream kept as it is may still carry a JPEG comment or an EXIF block written by the scanner."""
    from pydicom.encaps import encapsulate, generate_frames

    frames = list(generate_frames(ds.PixelData, number_of_frames=n_frames))
    cleaned = [strip_stream_text(f) for f in frames]
    removed = sum(len(a) - len(b) for a, b in zip(frames, cleaned, strict=True))
    if removed:
        ds.PixelData = encapsulate(cleaned, has_bot=True)
        ds["PixelData"].is_undefined_length = True
    return removed
