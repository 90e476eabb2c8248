"""DICOM files as lazy cines: pydicom decodes one frame at a time straight from the open file.

Decoders: pydicom's own (uncompressed, big-endian, RLE through pylibjpeg-rle), pylibjpeg-openjpeg (JPEG 2000)
and GDCM or Pillow (JPEG Baseline, the usual ultrasound cine). pylibjpeg-libjpeg is deliberately absent (GPL).

Rendering to uint8, the only pixel type the rest of sonokit sees:
- YBR_FULL / YBR_FULL_422 / YBR_RCT / YBR_ICT -> RGB (pydicom's colour conversion), PALETTE COLOR -> RGB via
  the file's lookup table (16-bit entries keep their top 8 bits).
- Grayscale deeper than 8 bits: the modality LUT and the first VOI window of the header when there is one
  (LINEAR, LINEAR_EXACT or SIGMOID); otherwise a fixed min-max range taken once per file from up to 8 evenly
  spaced frames, so every frame of a cine gets the same mapping (values outside it are clipped).
- MONOCHROME1 is inverted so that bright always means strong echo / high value.
- Colour deeper than 8 bits is scaled by its BitsStored range.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from sonokit.errors import InputError
from sonokit.io.cine import Cine
from sonokit.io.dicom_meta import frame_rate, spacing_mm, summary
from sonokit.io.limits import check_frame_size
from sonokit.utils.logs import get_logger

log = get_logger(__name__)

RANGE_SAMPLE_FRAMES = 8
_YBR = {"YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"}


def short_reason(err: BaseException, limit: int = 160) -> str:
    """First line of an exception message, trimmed: enough to act on, short enough for one output line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:  # "raised by all available plugins:" -- the reasons follow
        text = f"{text} {'; '.join(lines[1:])}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """pydicom reports odd-but-readable headers with warnings; send them to the debug log, not the terminal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        log.debug("pydicom: %s", w.message)


def transfer_syntax(ds: Any) -> Any:
    """The dataset's transfer syntax; files without file meta get the encoding pydicom detected."""
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    file_meta = getattr(ds, "file_meta", None)
    uid = file_meta.get("TransferSyntaxUID", None) if file_meta is not None else None
    if uid:
        return UID(uid)
    implicit, little = ds.original_encoding
    if little is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def read_header(path: Path) -> Any:
    """The dataset up to (not including) the pixel data; InputError when it is not a DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, OverflowError) as err:
        raise InputError(f"not a readable DICOM file ({short_reason(err)})", path) from err
    has_meta = bool(getattr(ds, "file_meta", None)) and "TransferSyntaxUID" in ds.file_meta
    if not has_meta and ("Rows" not in ds or "Columns" not in ds):
        raise InputError("not a DICOM file (no DICOM header found)", path)
    return ds


def _check_decoder(ds: Any, path: Path) -> Any:
    from pydicom.pixels import get_decoder

    uid = transfer_syntax(ds)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as err:
        raise InputError(
            f"transfer syntax {uid.name} ({uid}) is not supported by any installed decoder", path
        ) from err
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin"
        raise InputError(f"cannot decode transfer syntax {uid.name}: {missing}", path)
    return uid


def preferred_plugin(uid: Any) -> str:
    """Pillow for 8-bit JPEG: about twice as fast as GDCM on YBR_FULL_422 cines with identical output
    (benchmarks/bench_decode.py); pydicom's default order would try GDCM first. "" lets pydicom choose."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGBaseline8Bit

    if uid == JPEGBaseline8Bit and "pillow" in get_decoder(uid).available_plugins:
        return "pillow"
    return ""


def _window(ds: Any) -> tuple[float, float, str] | None:
    from sonokit.io.dicom_meta import _first, _float

    centre, width = _float(_first(ds.get("WindowCenter", None))), _float(_first(ds.get("WindowWidth", None)))
    if centre is None or width is None or width <= 0:
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    return centre, width, function


def apply_window(values: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """VOI windowing (PS3.3 C.11.2.1.2) of modality values to floats in [0, 1]."""
    x = values.astype(np.float64, copy=False)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - centre) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - centre) / width + 0.5, 0.0, 1.0)
    if width <= 1:
        return (x > centre - 0.5).astype(np.float64)
    return np.clip((x - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


class Renderer:
    """Turns decoded DICOM pixels of one file into uint8 (H, W) or RGB (H, W, 3); see the module docstring."""

    def __init__(self, ds: Any, raw_frame: Callable[[int], np.ndarray], n_frames: int) -> None:
        self.ds = ds
        self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        self.samples = int(ds.get("SamplesPerPixel", 1) or 1)
        self.bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
        self.channels = 3 if self.samples == 3 or self.photometric == "PALETTE COLOR" else 1
        self.window = _window(ds) if self.channels == 1 else None
        self._raw_frame = raw_frame
        self._n_frames = n_frames
        self._lut: np.ndarray | None = None
        self._range: tuple[float, float] | None = None

    @property
    def mapping(self) -> str:
        """How values become uint8, for Cine.meta (the reader documents what it did)."""
        if self.photometric == "PALETTE COLOR":
            return "palette_lut"
        if self.channels == 3:
            return "rgb" if self.bits_stored <= 8 else f"rgb_scaled_{self.bits_stored}bit"
        if self.bits_stored == 8 and self.window is None:
            return "identity"
        return "voi_window" if self.window is not None else "minmax_sampled"

    def _palette(self) -> np.ndarray:
        if self._lut is None:
            from pydicom.pixels import apply_color_lut

            n = 2 ** min(self.bits_stored, 16)
            index = np.arange(n, dtype=np.uint16 if n > 256 else np.uint8)
            lut = apply_color_lut(index, self.ds)
            if lut.dtype != np.uint8:
                # 16-bit palette entries: the top byte is the 8-bit colour (some writers put 8-bit values in
                # 16-bit entries; those are kept as they are).
                lut = (lut >> 8) if lut.max() > 255 else lut
            self._lut = lut.astype(np.uint8)
        return self._lut

    def _sampled_range(self) -> tuple[float, float]:
        if self._range is None:
            picks = np.unique(
                np.linspace(0, self._n_frames - 1, min(RANGE_SAMPLE_FRAMES, self._n_frames)).round()
            )
            lo, hi = np.inf, -np.inf
            for i in picks.astype(int):
                raw = self._raw_frame(int(i))
                lo, hi = min(lo, float(raw.min())), max(hi, float(raw.max()))
            self._range = (lo, hi)
        return self._range

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        if self.photometric == "PALETTE COLOR":
            return self._palette()[np.clip(arr, 0, len(self._palette()) - 1)]
        if self.channels == 3:
            if arr.dtype == np.uint8:
                return arr
            return _to_uint8(arr.astype(np.float64) / float(2**self.bits_stored - 1))
        if self.window is not None:
            from pydicom.pixels import apply_modality_lut

            out = _to_uint8(apply_window(apply_modality_lut(arr, self.ds), *self.window))
        elif arr.dtype == np.uint8 and self.bits_stored == 8:
            out = arr
        else:
            lo, hi = self._sampled_range()
            out = (
                _to_uint8((arr.astype(np.float64) - lo) / (hi - lo))
                if hi > lo
                else np.zeros(arr.shape, np.uint8)
            )
        if self.photometric == "MONOCHROME1":
            out = 255 - out
        return out


class DicomSource:
    """Frame access for one DICOM file; holds an open file handle and the header, never the decoded cine."""

    def __init__(self, path: Path, ds: Any, uid: Any, n_frames: int) -> None:
        self.path = path
        self.uid = uid
        self.n_frames = n_frames
        self._inflated: bytes | None = None
        if uid == "1.2.840.10008.1.2.1.99":  # Deflated Explicit VR: pydicom's frame readers need it inflated
            self._inflated, self.uid = _inflate(path), "1.2.840.10008.1.2.1"
        self.plugin = preferred_plugin(self.uid)
        self._file: BinaryIO | None = self._open()  # closed by close()
        self.render = Renderer(ds, self._raw, n_frames)

    def _open(self) -> BinaryIO:
        return io.BytesIO(self._inflated) if self._inflated is not None else open(self.path, "rb")  # noqa: SIM115

    def _handle(self) -> BinaryIO:
        if self._file is None:
            raise InputError("file was closed", self.path)
        return self._file

    def _raw(self, index: int) -> np.ndarray:
        from pydicom.pixels import pixel_array

        try:
            with quiet_pydicom():
                return pixel_array(
                    self._handle(), index=index, transfer_syntax_uid=self.uid, decoding_plugin=self.plugin
                )
        except InputError:
            raise
        except Exception as err:  # decoders raise RuntimeError, ValueError, struct.error, ...
            if self.plugin:  # the preferred plugin could not; let pydicom try every installed one from now on
                log.debug("%s: plugin %s failed (%s); trying all plugins", self.path.name, self.plugin, err)
                self.plugin = ""
                return self._raw(index)
            raise self._decode_error(index, err) from err

    def _decode_error(self, index: int, err: BaseException) -> InputError:
        if "no 'Pixel Data'" in str(err) or "no pixel data" in str(err).lower():
            return InputError("DICOM file has no pixel data (not an image)", self.path)
        reason = short_reason(err)
        return InputError(
            f"cannot decode frame {index} of {self.n_frames}, truncated or corrupt? ({reason})", self.path
        )

    def get(self, index: int) -> np.ndarray:
        return self.render(self._raw(index))

    def iterate(self, indices: list[int]) -> Iterator[np.ndarray]:
        from pydicom.pixels import iter_pixels

        if not indices:
            return
        # Sequential decoding of all frames walks the fragments once; a separate handle lets frame() calls and
        # several iterations run side by side on the same Cine.
        everything = indices == list(range(self.n_frames))
        with self._open() as f:
            frames = iter_pixels(
                f,
                indices=None if everything else indices,
                transfer_syntax_uid=self.uid,
                decoding_plugin=self.plugin,
            )
            try:
                for position in indices:
                    # The warning filter is held only while pydicom works, never across a yield.
                    try:
                        with quiet_pydicom():
                            raw = next(frames)
                    except StopIteration:
                        raise InputError(f"pixel data ends before frame {position}", self.path) from None
                    except Exception as err:
                        raise self._decode_error(position, err) from err
                    yield self.render(raw)
            finally:
                frames.close()  # pydicom's generator restores the file position: it must run before f closes

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:  # a Cine dropped without close() must not leak its file handle
        self.close()


def _inflate(path: Path) -> bytes:
    """The file re-encoded as plain Explicit VR Little Endian (its pixels are uncompressed inside the deflate)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(path, force=True)
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True, implicit_vr=False, little_endian=True)
    except Exception as err:
        raise InputError(f"cannot inflate the deflated DICOM ({short_reason(err)})", path) from err
    return buf.getvalue()


def number_of_frames(ds: Any, path: Path) -> int:
    if "NumberOfFrames" not in ds:
        return 1
    try:
        n = int(ds.NumberOfFrames)
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid NumberOfFrames {ds.get('NumberOfFrames')!r}", path) from err
    if n <= 0:
        raise InputError(f"NumberOfFrames is {n}: the file holds no frames", path)
    return n


def open_dicom(path: str | Path) -> Cine:
    """Open a DICOM file as a lazy Cine; decodes the first and last frame now to catch damaged files early."""
    path = Path(path)
    ds = read_header(path)
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(
            "DICOM file has no image attributes (Rows/Columns): truncated, or not an image", path
        )
    uid = _check_decoder(ds, path)
    n_frames = number_of_frames(ds, path)
    try:
        rows, cols, samples = int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid Rows/Columns ({short_reason(err)})", path) from None
    check_frame_size(path, rows, cols, frames=n_frames, channels=samples)
    source = DicomSource(path, ds, uid, n_frames)
    try:
        first = source.get(0)
        if n_frames > 1:
            source.get(n_frames - 1)  # truncated pixel data fails here, not in frame 900 of an epoch
    except BaseException:
        source.close()
        raise
    fps, fps_source = frame_rate(ds)
    spacing, spacing_source, spacing_note = spacing_mm(ds)
    meta = summary(ds)
    meta.update(fps_source=fps_source, spacing_source=spacing_source, pixel_mapping=source.render.mapping)
    if spacing_note:
        meta["spacing_note"] = spacing_note
    height, width = first.shape[:2]
    return Cine(
        path=path,
        n_frames=n_frames,
        height=int(height),
        width=int(width),
        channels=3 if first.ndim == 3 else 1,
        fps=fps,
        spacing_mm=spacing,
        meta=meta,
        _source=source,
    )
