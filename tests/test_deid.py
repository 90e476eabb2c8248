"""Header de-identification rules, UID mapping and the pixel-free (header only) anonymization path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import UID

from sonokit.errors import InputError
from sonokit.io import open_cine
from sonokit.io.deid import UidMapper, anonymize_file, deidentify_dataset

PLANTED_UID = "1.2.826.0.1.3680043.10.999.424242"


def _planted(ybr_dicom: Path) -> Dataset:
    ds = pydicom.dcmread(ybr_dicom, stop_before_pixels=True)
    ds.PatientName = "Doe^Janet"
    ds.PatientID = "MRN-771234"
    ds.PatientBirthDate = "19610704"
    ds.PatientAge = "063Y"
    ds.PatientWeight = 71.5
    ds.OtherPatientIDs = "ALT-5544"
    ds.InstitutionName = "St Elsewhere General"
    ds.OperatorsName = "Tech^Tina"
    ds.DeviceSerialNumber = "SN-8821-X"
    ds.StationName = "ECHO-ROOM-3"
    ds.ImageComments = "pt anxious, call daughter 555-0199"
    ds.StudyDescription = "Echo Doe Janet"
    ds.AcquisitionDateTime = "20160503121539"
    ds.FrameOfReferenceUID = PLANTED_UID
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = PLANTED_UID
    ref.PerformingPhysicianName = "Heart^Harry"
    ref.add_new(0x00291010, "LO", "nested private")
    ds.ReferencedImageSequence = [ref]
    ds.add_new(0x00091001, "LO", "top private")
    return ds


def test_header_rules(ybr_dicom: Path) -> None:
    ds = _planted(ybr_dicom)
    original_sop = str(ds.SOPInstanceUID)
    mapper = UidMapper("fixed-salt")
    deidentify_dataset(ds, mapper)

    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
    ):
        assert keyword in ds and ds[keyword].value in ("", None), keyword  # Type 2: present, empty
    for keyword in (
        "PatientAge",
        "PatientWeight",
        "OtherPatientIDs",
        "InstitutionName",
        "OperatorsName",
        "DeviceSerialNumber",
        "StationName",
        "ImageComments",
        "StudyDescription",
        "PerformedProcedureStepID",
    ):
        assert keyword not in ds, keyword
    assert ds.AcquisitionDateTime == "" and ds.ContentDate == ""
    assert not any(elem.tag.is_private for elem in ds.iterall())
    item = ds.ReferencedImageSequence[0]
    assert "PerformingPhysicianName" not in item
    # UIDs: consistent within the mapper (frame of reference and the reference point to the same new UID),
    # standard UIDs untouched, new ones valid 2.25 UIDs.
    assert item.ReferencedSOPInstanceUID == ds.FrameOfReferenceUID == mapper(PLANTED_UID)
    assert item.ReferencedSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
    assert ds.SOPInstanceUID == mapper(original_sop) != original_sop
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    new = UID(ds.StudyInstanceUID)
    assert new.startswith("2.25.") and new.is_valid and len(new) <= 64
    # Kept: what a model or a physicist needs.
    assert ds.Modality == "US" and ds.Manufacturer == "SonoSite, Inc." and float(ds.FrameTime) == 33.333
    assert ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX == pytest.approx(0.05104970559477806)
    # Recorded.
    assert ds.PatientIdentityRemoved == "YES"
    assert "DICOM PS3.15 Basic Profile" in ds.DeidentificationMethod
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert "BurnedInAnnotation" not in ds  # pixels not cleaned: nothing may claim they are


def test_uid_mapping_is_salted_and_stable() -> None:
    a, b = UidMapper("s1"), UidMapper("s1")
    assert a(PLANTED_UID) == b(PLANTED_UID)  # same salt, same run or not: same UID
    assert UidMapper("s2")(PLANTED_UID) != a(PLANTED_UID)
    assert UidMapper()(PLANTED_UID) != UidMapper()(PLANTED_UID)  # default: random salt per mapper
    assert a("1.2.840.10008.1.2.1") == "1.2.840.10008.1.2.1"
    assert len({a(f"{PLANTED_UID}.{i}") for i in range(1000)}) == 1000


def test_one_study_keeps_its_study_uid_across_files(tmp_path: Path, ybr_dicom: Path) -> None:
    second = pydicom.dcmread(ybr_dicom)
    second.SOPInstanceUID = PLANTED_UID
    second.save_as(tmp_path / "b.dcm")
    shutil.copy(ybr_dicom, tmp_path / "a.dcm")
    out_a = pydicom.dcmread(anonymize_file(tmp_path / "a.dcm", tmp_path / "out" / "a.dcm", False, "run-1"))
    out_b = pydicom.dcmread(anonymize_file(tmp_path / "b.dcm", tmp_path / "out" / "b.dcm", False, "run-1"))
    assert out_a.StudyInstanceUID == out_b.StudyInstanceUID != pydicom.dcmread(ybr_dicom).StudyInstanceUID
    assert out_a.SeriesInstanceUID == out_b.SeriesInstanceUID
    assert out_a.SOPInstanceUID != out_b.SOPInstanceUID


def test_header_only_keeps_stored_pixels(tmp_path: Path) -> None:
    src = Path(get_testdata_file("examples_palette.dcm"))
    out = anonymize_file(src, tmp_path / "palette.dcm", mask_pixels=False)
    before, after = pydicom.dcmread(src), pydicom.dcmread(out)
    assert after.PhotometricInterpretation == "PALETTE COLOR"
    assert np.array_equal(after.pixel_array, before.pixel_array)
    assert np.array_equal(open_cine(out).frame(0), open_cine(src).frame(0))  # the LUT travelled too
    assert after.PatientIdentityRemoved == "YES" and "BurnedInAnnotation" not in after
    assert after.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"


def test_compressed_header_only_keeps_its_compressed_bytes(tmp_path: Path, ybr_dicom: Path) -> None:
    out_path = anonymize_file(ybr_dicom, tmp_path / "ybr.dcm", mask_pixels=False)
    out, src = pydicom.dcmread(out_path), pydicom.dcmread(ybr_dicom)
    assert out.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert out.PhotometricInterpretation == "YBR_FULL_422" and int(out.NumberOfFrames) == 30
    assert out.PixelData == src.PixelData  # the very bytes: no decode, no re-encode
    assert out_path.stat().st_size < 1.1 * ybr_dicom.stat().st_size
    assert np.array_equal(open_cine(out_path).read(), open_cine(ybr_dicom).read())


def test_masked_big_endian_palette_is_written_little_endian(tmp_path: Path) -> None:
    src = Path(get_testdata_file("gdcm-US-ALOKA-16_big.dcm"))
    out = anonymize_file(src, tmp_path / "aloka.dcm")
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (ds.PhotometricInterpretation, ds.BitsStored) == ("RGB", 8)
    # "127/128 20Hz" is burned in inside the region the scanner declares: found, so not claimed clean
    assert ds.BurnedInAnnotation == "YES"
    assert "text-like marks remain inside the sector" in ds.DeidentificationMethod
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert "RedPaletteColorLookupTableData" not in ds and "NumberOfFrames" not in ds
    pixels = ds.pixel_array
    original = open_cine(src).frame(0)
    assert pixels.shape == original.shape == (480, 640, 3)
    kept = (pixels == original).all(axis=-1)
    assert 0.5 < kept.mean() < 1.0  # the two B-mode views stay; the banner with the site name and date goes
    assert (
        pixels[:20].max() == 0 and original[:20].max() > 100
    )  # top banner: "*WESTWAY MEDICAL* ... 24-MAY-02"


def test_refuses_to_overwrite_the_source(tmp_path: Path, ybr_dicom: Path) -> None:
    src = tmp_path / "x.dcm"
    shutil.copy(ybr_dicom, src)
    with pytest.raises(InputError, match="refusing to overwrite"):
        anonymize_file(src, src)


def test_non_dicom_input_is_an_input_error(tmp_path: Path) -> None:
    src = tmp_path / "notes.dcm"
    src.write_text("not dicom at all\n" * 10)
    with pytest.raises(InputError, match="not a DICOM file") as info:
        anonymize_file(src, tmp_path / "out.dcm")
    assert str(src) in str(info.value)
    assert not (tmp_path / "out.dcm").exists()


def test_output_plan_keeps_relative_names_and_skips_its_own_output(tmp_path: Path, ybr_dicom: Path) -> None:
    from sonokit.io.deid import plan_outputs

    study = tmp_path / "study"
    (study / "a").mkdir(parents=True)
    (study / "anon").mkdir()
    shutil.copy(ybr_dicom, study / "a" / "IM1")
    shutil.copy(ybr_dicom, study / "anon" / "old.dcm")  # an earlier result inside the input folder
    shutil.copy(ybr_dicom, tmp_path / "IM1")
    pairs, errors = plan_outputs([study, tmp_path / "IM1", tmp_path / "nowhere"], study / "anon")
    assert pairs == [
        (study / "a" / "IM1", study / "anon" / "a" / "IM1"),
        (tmp_path / "IM1", study / "anon" / "IM1"),
    ]
    assert len(errors) == 1 and "no such file" in errors[0][1]
