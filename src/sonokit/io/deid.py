"""DICOM de-identification: the PS3.15 Basic Application Confidentiality Profile plus pixel masking.

Header rules (applied recursively, into every sequence item):
- private tags and public tags without a dictionary keyword are removed (their content cannot be judged);
- the patient group (0010), clinical-trial (0012), study/visit administration (0032, 0038), results (4008),
  curves (50xx) and overlays (60xx, which can carry burned-in text) are removed, except the Type 2 patient
  attributes (name, ID, birth date, sex), which stay present but empty;
- the attributes the profile lists for removal (physicians, operators, institution, station, device serial
  numbers, accession number, procedure steps, descriptions, comments, ...) are removed, and so is every
  element with a person name (PN), age (AS), AE title, URL (UR) or free text (LT, ST, UT, UC) value and every
  attribute whose keyword names an ID, identifier, serial number, address, phone number, comment or
  description;
- dates, times and datetimes (DA, TM, DT) are blanked (kept, empty): dates are removed, not shifted;
- UIDs (UI) are replaced by `2.25.<int>` UIDs derived from a salted SHA-256 of the original, so the same input
  UID gets the same new UID within a run (series and study stay grouped), except standard DICOM UIDs
  (`1.2.840.10008.*`: SOP classes, transfer syntaxes), which carry no identity;
- PatientIdentityRemoved = YES, DeidentificationMethod and its code sequence (113100 Basic Profile, plus
  113101 Clean Pixel Data when the pixels are clean), LongitudinalTemporalInformationModified = REMOVED, and
  BurnedInAnnotation = NO only when the pixels outside the ultrasound sector are 0 *and* no text-like marks
  were found inside it (`sonokit.preprocess.text.find_text`); with marks inside it is YES.

Pixels (mask_pixels=True): frames are decoded to sonokit's uint8 rendering (RGB or MONOCHROME2, see
dicom_read), the ultrasound sector is found with `sonokit.preprocess.detect_sector`, limited to the union of
the header's ultrasound regions when they fit the image, and everything outside it is set to 0. When that
changes no pixel, the input's pixel data bytes and transfer syntax are kept as they are; otherwise the masked
rendering is written with the codec of `sonokit.io.deid_pixels` (compressed input: JPEG 2000 Lossless by
default, so a JPEG cine stays near its size). Without pixel masking (header only) the stored pixel data is kept
as it is, compressed or not. Kept compressed streams lose their comment and application segments (JPEG COM,
APP1-13/15; JPEG 2000 COM), which can hold text.

This is research tooling: check the output against your institution's de-identification policy.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonokit import __version__
from sonokit.errors import InputError
from sonokit.utils.atomic import atomic_path
from sonokit.utils.logs import get_logger
from sonokit.utils.paths import printable

log = get_logger(__name__)

STANDARD_UID_ROOT = "1.2.840.10008."

# Type 2 attributes of the Patient and General Study modules: the profile's "Z" (keep, zero length).
EMPTY_KEYWORDS = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
        "ContentDate",
        "ContentTime",
    }
)

# Attributes of PS3.15 Table E.1-1 removed outright ("X", and "X/Z/D" resolved to X) that the generic VR
# and group rules below would not already catch.
REMOVE_KEYWORDS = frozenset(
    {
        "AcquisitionContextSequence",
        "AcquisitionDeviceProcessingDescription",
        "AcquisitionProtocolDescription",
        "AcquisitionProtocolName",
        "ActualHumanPerformersSequence",
        "AdmittingDiagnosesCodeSequence",
        "AuthorObserverSequence",
        "CassetteID",
        "ContentCreatorIdentificationCodeSequence",
        "ContentSequence",
        "ContributingEquipmentSequence",
        "CustodialOrganizationSequence",
        "DataSetTrailingPadding",
        "DetectorID",
        "DeviceDescription",
        "DeviceID",
        "DeviceLabel",
        "DeviceSerialNumber",
        "DigitalSignaturesSequence",
        "EncryptedAttributesSequence",
        "FillerOrderNumberImagingServiceRequest",
        "FillerOrderNumberProcedure",
        "GantryID",
        "GeneratorID",
        "HumanPerformerOrganization",
        "IconImageSequence",
        "InstitutionAddress",
        "InstitutionCodeSequence",
        "InstitutionName",
        "InstitutionalDepartmentName",
        "InstitutionalDepartmentTypeCodeSequence",
        "IntendedRecipientsOfResultsIdentificationSequence",
        "IssuerOfAdmissionIDSequence",
        "LensMake",
        "LensModel",
        "LensSerialNumber",
        "MACParametersSequence",
        "ModifiedAttributesSequence",
        "ModifyingDeviceID",
        "ModifyingDeviceManufacturer",
        "OperatorIdentificationSequence",
        "OrderEnteredBy",
        "OrderEntererLocation",
        "OrderCallbackPhoneNumber",
        "OriginalAttributesSequence",
        "ParticipantSequence",
        "PerformedLocation",
        "PlacerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberProcedure",
        "PerformedProcedureStepID",
        "PerformedStationGeographicLocationCodeSequence",
        "PerformedStationName",
        "PerformedStationNameCodeSequence",
        "PerformingPhysicianIdentificationSequence",
        "PersonAddress",
        "PersonIdentificationCodeSequence",
        "PersonTelephoneNumbers",
        "PhysiciansOfRecordIdentificationSequence",
        "PhysiciansReadingStudyIdentificationSequence",
        "PlateID",
        "ProtocolName",
        "ReferencedPatientAliasSequence",
        "ReferencedPatientSequence",
        "ReferencedPerformedProcedureStepSequence",
        "ReasonForStudy",
        "ReasonForTheImagingServiceRequest",
        "ReasonForTheRequestedProcedure",
        "ReferencedStudySequence",
        "ReferringPhysicianAddress",
        "ReferringPhysicianIdentificationSequence",
        "ReferringPhysicianTelephoneNumbers",
        "RequestAttributesSequence",
        "RequestedContrastAgent",
        "RequestedProcedureID",
        # coded procedures carry free text in CodeMeaning (a site's own codes often name the patient's case)
        "ProcedureCodeSequence",
        "RequestedProcedureCodeSequence",
        "PerformedProcedureCodeSequence",
        "ReasonForRequestedProcedureCodeSequence",
        "RequestedProcedureLocation",
        "RequestingService",
        "ResponsibleOrganization",
        "ScheduledPatientInstitutionResidence",
        "ScheduledPerformingPhysicianIdentificationSequence",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepLocation",
        "ScheduledStationGeographicLocationCodeSequence",
        "ScheduledStationName",
        "ScheduledStationNameCodeSequence",
        "ScheduledStudyLocation",
        "ServiceEpisodeID",
        "SoftwareVersions",
        "SourceApplicationEntityTitle",
        "SpecialNeeds",
        "StationName",
        "StorageMediaFileSetID",
        "StudyIDIssuer",
        "TextString",
        "TimezoneOffsetFromUTC",
        "UniqueDeviceIdentifier",
        "VerifyingObserverIdentificationCodeSequence",
        "VerifyingObserverSequence",
        "VerifyingOrganization",
    }
)

# Value representations that hold names, ages, network names, URLs or free text: removed wherever they occur.
REMOVE_VRS = frozenset({"PN", "AS", "AE", "LT", "ST", "UT", "UC", "UR"})
BLANK_VRS = frozenset({"DA", "TM", "DT"})
# Whole groups the basic profile empties: patient, clinical trial, study/visit administration, results.
REMOVE_GROUPS = frozenset({0x0010, 0x0012, 0x0032, 0x0038, 0x4008})


_REMOVE_SUFFIXES = (
    "Comments",
    "Comment",
    "Description",  # free text typed at the scanner; the profile removes every one it lists
    "ID",
    "Identifier",
    "SerialNumber",  # patient, order, device and station identifiers (UIDs end in "UID" and are mapped)
    "Address",
    "TelephoneNumbers",
    "PhoneNumber",
)


def _identifying_name(keyword: str) -> bool:
    return keyword.endswith(_REMOVE_SUFFIXES) and not keyword.endswith("UID")


def _group_removed(group: int) -> bool:
    return (
        group in REMOVE_GROUPS or 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and group % 2 == 0)
    )


class UidMapper:
    """Maps each original UID to a new `2.25.<int>` UID: a salted SHA-256, the same output for the same input.

    Keep `salt` secret if you pass one (with it, a known original UID can be matched to its replacement); the
    default is a random salt per mapper, so mappings are consistent within a run and unlinkable across runs.
    """

    def __init__(self, salt: str | None = None) -> None:
        self.salt = salt if salt is not None else secrets.token_hex(16)

    def __call__(self, uid: str) -> str:
        uid = str(uid).strip().rstrip("\x00")
        if not uid or is_standard_uid(uid):
            return uid
        digest = hashlib.sha256(f"{self.salt}\x00{uid}".encode("utf-8", "surrogateescape")).digest()[:16]
        return f"2.25.{int.from_bytes(digest, 'big')}"


def is_standard_uid(uid: str) -> bool:
    """A UID the DICOM standard defines (SOP class, transfer syntax, coding scheme...): kept as it is.

    Only UIDs in pydicom's dictionary of the standard's UIDs count; anything else under 1.2.840.10008 (a crafted
    FrameOfReferenceUID) is replaced like any other UID.
    """
    from pydicom._uid_dict import UID_dictionary

    return uid.startswith(STANDARD_UID_ROOT) and uid in UID_dictionary


_RUN_MAPPERS: dict[str | None, UidMapper] = {}


def run_mapper(salt: str | None = None) -> UidMapper:
    """One mapper per salt for this process, so files anonymized in one run share their UID mapping."""
    if salt not in _RUN_MAPPERS:
        _RUN_MAPPERS[salt] = UidMapper(salt)
    return _RUN_MAPPERS[salt]


def _map_uid_value(value: Any, mapper: UidMapper) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [mapper(v) for v in value]
    return mapper(value)


def _clean(ds: Any, mapper: UidMapper) -> None:
    for elem in list(ds):
        tag, keyword, vr = elem.tag, elem.keyword, elem.VR
        if tag.is_private or not keyword:
            del ds[tag]
        elif keyword in EMPTY_KEYWORDS:
            elem.value = [] if vr == "SQ" else ""
        elif (
            _group_removed(tag.group)
            or keyword in REMOVE_KEYWORDS
            or vr in REMOVE_VRS
            or _identifying_name(keyword)
        ):
            del ds[tag]
        elif vr in BLANK_VRS:
            elem.value = ""
        elif vr == "UI":
            if elem.value:
                elem.value = _map_uid_value(elem.value, mapper)
        elif vr == "SQ":
            for item in elem.value:
                _clean(item, mapper)


def _code_item(value: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def deidentify_dataset(
    ds: Any, uid_mapper: UidMapper | None = None, pixels_cleaned: bool = False, text_remains: bool = False
) -> Any:
    """Apply the header rules of the module docstring to `ds` in place and return it.

    `pixels_cleaned` says whether the caller has blanked everything outside the sector, `text_remains` whether
    text-like marks were found inside it: BurnedInAnnotation is NO only for clean pixels without such marks,
    YES when marks remain. File meta (group 0002) is updated for the new SOP Instance UID.
    """
    mapper = uid_mapper or run_mapper()
    _clean(ds, mapper)
    ds.PatientIdentityRemoved = "YES"
    methods = [
        f"sonokit {__version__}",
        "DICOM PS3.15 Basic Profile",
        "private tags removed",
        "UIDs replaced",
        "dates and times blanked",
    ]
    codes = [_code_item("113100", "Basic Application Confidentiality Profile")]
    if pixels_cleaned:
        methods.append("pixels outside the sector set to 0")
        if text_remains:
            methods.append("text-like marks remain inside the sector")
            ds.BurnedInAnnotation = "YES"
        else:
            codes.append(_code_item("113101", "Clean Pixel Data Option"))
            ds.BurnedInAnnotation = "NO"
    ds.DeidentificationMethod = methods
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        if "SOPInstanceUID" in ds:
            file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword in (
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
        ):
            if keyword in file_meta:
                del file_meta[keyword]
    return ds


# Elements that describe stored values which the uint8 rendering replaces (LUTs, windows, rescale).
_RENDERING_KEYWORDS = (
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
    "ModalityLUTSequence",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
)


def region_mask(ds: Any, shape: tuple[int, int]) -> Any:
    """(H, W) bool mask of the union of the header's ultrasound regions, or None when there are none or a box
    lies outside the image (the file was resized and the boxes no longer describe its pixels)."""
    import numpy as np

    from sonokit.io.dicom_meta import regions

    boxes = [r["box"] for r in regions(ds) if r["box"] is not None]
    height, width = shape
    if not boxes or any(x1 > width or y1 > height or x0 < 0 or y0 < 0 for x0, y0, x1, y1 in boxes):
        return None
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def masked_frames(src: Path, ds: Any) -> tuple[Any, Any, bool]:
    """(frames, mask, changed): the file's frames as sonokit's uint8 rendering with everything outside the
    ultrasound sector set to 0, the (H, W) mask, and whether that set any non-zero pixel to 0.

    The sector comes from `sonokit.preprocess.detect_sector`; when the header lists ultrasound regions, the
    mask is also limited to their union: the scanner's own statement of where image data lies, so a banner
    above the regions is blanked even if detection were to include it.
    """
    from sonokit.io.cine import open_cine
    from sonokit.preprocess import detect_sector

    with open_cine(src) as cine:
        frames = cine.read()
    try:
        mask = detect_sector(frames).mask
    except InputError as err:
        if err.path is None:
            raise InputError(f"cannot mask pixels: {err}", src) from err
        raise
    regions_only = region_mask(ds, mask.shape)
    if regions_only is not None:
        mask = mask & regions_only
    changed = bool(frames[:, ~mask].any())
    frames[:, ~mask] = 0
    return frames, mask, changed


def _set_rendered_pixels(ds: Any, frames: Any) -> None:
    from pydicom.uid import ExplicitVRLittleEndian

    had_frames = "NumberOfFrames" in ds
    for keyword in _RENDERING_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    colour = frames.ndim == 4
    # Single-frame SOP classes have no NumberOfFrames; multi-frame ones keep it, also for a single frame.
    pixels = frames if had_frames or len(frames) > 1 else frames[0]
    ds.set_pixel_data(pixels, "RGB" if colour else "MONOCHROME2", 8, generate_instance_uid=False)
    if had_frames:
        ds.NumberOfFrames = len(frames)
    elif "NumberOfFrames" in ds and len(frames) == 1:
        del ds.NumberOfFrames


@dataclass(frozen=True)
class DeidResult:
    """What one anonymized file became: sizes and encodings before/after, and what the pixel check found."""

    dst: Path
    kind: str  # "dicom" or "video"
    pixels: str  # "masked", "unchanged" (nothing outside the sector), "kept" (header only)
    encoding_in: str
    encoding_out: str
    bytes_in: int
    bytes_out: int
    text_in_sector: bool | None  # None: not checked (header only)
    burned_in_annotation: str  # the value written ("" when not stated)

    def row(self, out_dir: Path) -> dict[str, Any]:
        """One row of the report CSV: no source names, only the output's."""
        return {
            "output": printable(self.dst.relative_to(out_dir)),
            "kind": self.kind,
            "pixels": self.pixels,
            "encoding_in": self.encoding_in,
            "encoding_out": self.encoding_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "text_in_sector": "" if self.text_in_sector is None else ("yes" if self.text_in_sector else "no"),
            "burned_in_annotation": self.burned_in_annotation,
        }


def _keep_stored_pixels(ds: Any, tsyntax: Any, src: Path) -> Any:
    """The output syntax that keeps the stored pixel data bytes as they are (text segments of compressed
    streams removed)."""
    from pydicom.uid import ExplicitVRLittleEndian

    from sonokit.io.deid_pixels import strip_encapsulated_text
    from sonokit.io.dicom_read import number_of_frames

    if "PixelData" not in ds:
        raise InputError("DICOM file has no pixel data (not an image)", src)
    if tsyntax.is_encapsulated:
        removed = strip_encapsulated_text(ds, number_of_frames(ds, src))
        if removed:
            log.debug("removed %d bytes of comment/application segments from the compressed frames", removed)
        return tsyntax
    # pydicom cannot byte-swap raw OW values (pixels, palettes): a big-endian file stays big-endian.
    return tsyntax if not tsyntax.is_little_endian else ExplicitVRLittleEndian


def deidentify_file(
    src: str | Path,
    dst: str | Path,
    mask_pixels: bool = True,
    uid_salt: str | None = None,
    codec: str = "auto",
    quality: int = 95,
) -> DeidResult:
    """Write a de-identified copy of the DICOM file `src` to `dst` (atomically) and say what was done.

    See the module docstring for what is removed; `codec` and `quality` choose how masked pixels of a compressed
    input are re-encoded (`sonokit.io.deid_pixels`). Files anonymized in one process with the same `uid_salt`
    (None: one random salt per process) share their UID mapping, so a study keeps its series together.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    from sonokit.io.deid_pixels import encode_pixels, mark_lossy_history, output_syntax
    from sonokit.io.dicom_read import quiet_pydicom, read_header, short_reason, transfer_syntax
    from sonokit.preprocess.text import find_text

    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise InputError("refusing to overwrite the original with its anonymized copy", dst)
    read_header(src)  # a one-line InputError for non-DICOM input before any decoding
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(src, force=True)
    except Exception as err:
        raise InputError(f"not a readable DICOM file ({short_reason(err)})", src) from err
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    tsyntax = transfer_syntax(ds)
    output_syntax(codec, tsyntax)  # an unknown codec or a missing encoder: before any decoding
    text, pixels = None, "kept"
    if mask_pixels:
        frames, mask, changed = masked_frames(src, ds)
        text = find_text(frames, mask).found
        pixels = "masked" if changed else "unchanged"
    if pixels == "masked":
        out_syntax = output_syntax(codec, tsyntax)
        _set_rendered_pixels(ds, frames)
        try:
            with quiet_pydicom():
                encode_pixels(ds, frames, out_syntax, quality)
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"cannot encode the masked pixels ({short_reason(err)})", src) from err
        mark_lossy_history(ds, tsyntax)
        # A big-endian source is written little-endian: its pixels are new and the elements left after
        # de-identification are parsed values that pydicom encodes afresh.
        ds.set_original_encoding(False, True, ds.original_character_set)
    else:
        out_syntax = _keep_stored_pixels(ds, tsyntax, src)
    deidentify_dataset(ds, run_mapper(uid_salt), pixels_cleaned=mask_pixels, text_remains=bool(text))

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", ds.file_meta.get("MediaStorageSOPClassUID"))
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", run_mapper(uid_salt)(str(src)))
    meta.TransferSyntaxUID = out_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"SONOKIT_{__version__}"[:16]
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128  # a preamble may hold another format's header (e.g. TIFF) with identifiers
    with atomic_path(dst) as tmp:
        with quiet_pydicom():
            ds.save_as(
                tmp, enforce_file_format=True, implicit_vr=False, little_endian=out_syntax.is_little_endian
            )
    result = DeidResult(
        dst=dst,
        kind="dicom",
        pixels=pixels,
        encoding_in=tsyntax.name,
        encoding_out=out_syntax.name,
        bytes_in=src.stat().st_size,
        bytes_out=dst.stat().st_size,
        text_in_sector=text,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "")),
    )
    # No file names here: a source name often holds the patient's name or ID, and logs are kept and shared.
    log.debug(
        "anonymized one DICOM file (pixels %s; %s, %d bytes -> %s, %d bytes)",
        pixels,
        tsyntax.name,
        result.bytes_in,
        out_syntax.name,
        result.bytes_out,
    )
    return result


def anonymize_file(
    src: str | Path,
    dst: str | Path,
    mask_pixels: bool = True,
    uid_salt: str | None = None,
    codec: str = "auto",
    quality: int = 95,
) -> Path:
    """Write a de-identified copy of the DICOM file `src` to `dst` (atomically) and return `dst`
    (`deidentify_file` also says what was done)."""
    return deidentify_file(src, dst, mask_pixels, uid_salt, codec, quality).dst


def _inside(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def _as_output(dst: Path) -> Path:
    """A video keeps its name but gets the extension its de-identified copy is written with."""
    from sonokit.io.deid_video import output_suffix
    from sonokit.io.formats import file_kind

    if file_kind(dst) == "video":
        return dst.with_suffix(output_suffix(dst))
    return dst


def plan_outputs(
    sources: list[str | Path], out_dir: str | Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """(src, dst) pairs keeping each file's name relative to the folder it was found in, plus one error per
    source that yielded nothing. Output names come from input names only, never from header content."""
    from sonokit.io.batch import error_line
    from sonokit.io.formats import find_inputs

    out_dir = Path(out_dir)
    pairs: list[tuple[Path, Path]] = []
    errors: list[tuple[Path, str]] = []
    taken: dict[Path, Path] = {}
    for raw in sources:
        root = Path(raw)
        try:
            files = find_inputs([root], kinds=("dicom", "video"))
        except InputError as err:
            errors.append((root, error_line(root, err)))
            continue
        for src in files:
            if root.is_dir() and _inside(src, out_dir):
                continue  # an output folder inside the input folder: never re-anonymize earlier results
            dst = _as_output(out_dir / (src.relative_to(root) if root.is_dir() else src.name))
            if dst in taken:
                errors.append(
                    (
                        src,
                        f"{printable(src)}: output {printable(dst)} is already taken by {printable(taken[dst])}",
                    )
                )
                continue
            taken[dst] = src
            pairs.append((src, dst))
    return pairs, errors


def default_mapping_path(out_dir: str | Path) -> Path:
    """Where the name mapping goes by default: beside the output folder, never inside it (it is shared)."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}_names.csv"


def neutral_outputs(pairs: list[tuple[Path, Path]], out_dir: str | Path) -> list[tuple[Path, Path]]:
    """Replace planned output names by neutral ones: file and folder names often hold patient names and IDs
    (`PLNTFNAME_ALICE_7781.dcm`). Folders become `study_NNN`, files `image_NNNN.dcm` (videos `video_NNNN.avi`,
    their container's extension), numbered in input order; files that shared a folder still share one."""
    from sonokit.io.formats import file_kind

    out_dir = Path(out_dir)
    folders: dict[Path, Path] = {}
    renamed = []
    for k, (src, dst) in enumerate(pairs, start=1):
        parent = dst.parent
        if parent != out_dir:
            folders.setdefault(parent, out_dir / f"study_{len(folders) + 1:03d}")
        name = f"video_{k:04d}{dst.suffix}" if file_kind(dst) == "video" else f"image_{k:04d}.dcm"
        renamed.append((src, folders.get(parent, out_dir) / name))
    return renamed


def write_name_mapping(pairs: list[tuple[Path, Path]], out_dir: Path, mapping: Path) -> Path:
    """CSV output,source (relative output name, original path as given) for the user to keep privately."""
    import pandas as pd

    from sonokit.utils.atomic import write_csv

    if _inside(mapping, out_dir) or mapping.resolve() == out_dir.resolve():
        raise InputError(
            "the name mapping holds the original names; write it outside the output folder", mapping
        )
    rows = [{"output": str(dst.relative_to(out_dir)), "source": printable(src)} for src, dst in pairs]
    return write_csv(pd.DataFrame(rows, columns=["output", "source"]), mapping)


REPORT_NAME = "deid_report.csv"


def deidentify_any(
    src: Path, dst: Path, mask_pixels: bool, uid_salt: str | None, codec: str, quality: int
) -> DeidResult:
    """A video export goes through `deid_video`, anything else through the DICOM path (which names a file that
    is neither)."""
    from sonokit.io.formats import file_kind

    if file_kind(src) == "video":
        if not mask_pixels:
            raise InputError(
                "a video has no header to clean: its pixels are always masked (drop --no-pixels)", src
            )
        from sonokit.io.deid_video import deidentify_video

        return deidentify_video(src, dst)
    return deidentify_file(src, dst, mask_pixels, uid_salt, codec, quality)


def write_report(results: list[DeidResult], out_dir: Path) -> Path:
    """`<out>/deid_report.csv`: per output file, what happened to its pixels, its encoding and size before and
    after, and whether text-like marks remain inside the sector. Output names only: it may be shared."""
    import pandas as pd

    from sonokit.utils.atomic import write_csv

    return write_csv(pd.DataFrame([r.row(out_dir) for r in results]), out_dir / REPORT_NAME)


def anonymize_paths(
    sources: list[str | Path],
    out_dir: str | Path,
    mask_pixels: bool = True,
    uid_salt: str | None = None,
    keep_names: bool = False,
    mapping: str | Path | None = None,
    codec: str = "auto",
    quality: int = 95,
) -> Any:
    """Anonymize files and folders of DICOM files and videos into `out_dir`; returns a BatchResult whose
    results are DeidResults, and writes `out_dir/deid_report.csv` (see `write_report`).

    Output names are neutral (`study_NNN/image_NNNN.dcm`, `video_NNNN.avi`) and the original names go to the CSV
    `mapping` (default: `<out_dir>_names.csv` beside the output folder), or with `keep_names` the relative input
    names are kept (they may hold identifiers). The result's `mapping` attribute is the mapping file or None.
    """
    from pydicom.uid import JPEGBaseline8Bit

    from sonokit.io.batch import run_batch
    from sonokit.io.deid_pixels import output_syntax

    out_dir = Path(out_dir)
    output_syntax(codec, JPEGBaseline8Bit)  # an unknown codec or a missing encoder: before any file is read
    pairs, errors = plan_outputs(sources, out_dir)
    if not pairs and errors:
        raise InputError("; ".join(message for _, message in errors))
    mapping_path = None
    if not keep_names:
        pairs = neutral_outputs(pairs, out_dir)
        mapping_path = write_name_mapping(pairs, out_dir, Path(mapping or default_mapping_path(out_dir)))
    result = run_batch(
        pairs,
        lambda pair: deidentify_any(pair[0], pair[1], mask_pixels, uid_salt, codec, quality),
        lambda pair: pair[0],
        desc="anonymize",
    )
    result.errors[:0] = errors
    result.mapping = mapping_path
    if result.results:
        write_report([r for _, r in result.results], out_dir)
    return result
