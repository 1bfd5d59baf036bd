"""The synthetic images are valid DICOM: dciodvfy finds no error, DCMTK reads them, same seed
gives the same bytes, and the CT phantom is where its geometry says it is."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from fake_modalities.images import (
    CR_IMAGE_STORAGE,
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    UID_ROOT,
    US_IMAGE_STORAGE,
    CrSeriesSpec,
    CtSeriesSpec,
    MrSeriesSpec,
    PatientStudy,
    UsSeriesSpec,
    cr_series,
    ct_series,
    derive_uid,
    mr_series,
    us_series,
    write_series,
)

requires_dciodvfy = pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (Debian package dicom3tools) is not installed",
)
requires_dcmdump = pytest.mark.skipif(
    shutil.which("dcmdump") is None, reason="dcmdump (Debian package dcmtk) is not installed"
)

WORKLIST_STUDY = PatientStudy(
    patient_id="MRN0042",
    patient_name="Müller^Jürgen",
    birth_date="19700412",
    sex="M",
    issuer_of_patient_id="SIMLAB",
    accession_number="ACC20240304",
    study_instance_uid=derive_uid("test", "worklist-study"),
    study_id="RP0042",
    referring_physician="LEE^ANNA",
    study_description="CT HEAD WO CONTRAST",
    requested_procedure_id="RP0042",
    requested_procedure_description="CT head without contrast",
    scheduled_procedure_step_id="SPS0042",
    scheduled_procedure_step_description="CT head",
    patient_age="053Y",
    patient_weight=81.5,
    patient_size=1.79,
)
"""A study as a modality copies it from a worklist item: every field filled."""

MINIMAL_STUDY = PatientStudy(patient_id="P2", patient_name="DOE^JOHN")
"""A study keyed by hand at the console (no worklist): only ID and name."""

Generator = Callable[[PatientStudy, int], Iterator[Dataset]]

GENERATORS: dict[str, tuple[str, Generator]] = {
    "ct": (
        CT_IMAGE_STORAGE,
        lambda study, seed: ct_series(
            study,
            CtSeriesSpec(
                slices=2,
                rows=64,
                columns=64,
                performed_procedure_step_id="PPS0042",
                mpps_sop_instance_uid=derive_uid("test", "mpps"),
                operator_name="TECH^TOM",
            ),
            seed=seed,
        ),
    ),
    "ct-full-size": (
        CT_IMAGE_STORAGE,
        lambda study, seed: ct_series(study, CtSeriesSpec(slices=2), seed=seed),
    ),
    "mr-t2": (
        MR_IMAGE_STORAGE,
        lambda study, seed: mr_series(
            study, MrSeriesSpec(slices=2, rows=64, columns=64), seed=seed
        ),
    ),
    "mr-flair": (
        MR_IMAGE_STORAGE,
        lambda study, seed: mr_series(
            study, MrSeriesSpec(slices=2, rows=48, columns=64, weighting="FLAIR"), seed=seed
        ),
    ),
    "cr": (
        CR_IMAGE_STORAGE,
        lambda study, seed: cr_series(
            study, CrSeriesSpec(images=2, rows=86, columns=70), seed=seed
        ),
    ),
    "us": (
        US_IMAGE_STORAGE,
        lambda study, seed: us_series(
            study, UsSeriesSpec(images=2, rows=60, columns=80), seed=seed
        ),
    ),
}


def _generate(name: str, study: PatientStudy, seed: int, directory: Path) -> list[Path]:
    """Write a generator's sample; any pydicom warning (a value of the wrong type) fails."""
    _, generator = GENERATORS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return write_series(generator(study, seed), directory)


def _dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """The Error and Warning lines dciodvfy prints for one file."""
    result = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    found_warnings = [line for line in lines if line.startswith("Warning")]
    return errors, found_warnings


@requires_dciodvfy
@pytest.mark.parametrize("study", [WORKLIST_STUDY, MINIMAL_STUDY], ids=["worklist", "minimal"])
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_dciodvfy_finds_no_error(name: str, study: PatientStudy, tmp_path: Path) -> None:
    paths = _generate(name, study, seed=7, directory=tmp_path)
    assert len(paths) == 2
    for path in paths:
        errors, found_warnings = _dciodvfy(path)
        assert errors == [], f"{path.name}: {errors}"
        assert found_warnings == [], f"{path.name}: {found_warnings}"


@requires_dcmdump
@pytest.mark.dcmtk
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_dcmdump_reads_every_file(name: str, tmp_path: Path) -> None:
    sop_class, _ = GENERATORS[name]
    for path in _generate(name, WORKLIST_STUDY, seed=7, directory=tmp_path):
        result = subprocess.run(
            ["dcmdump", "-q", "+P", "0002,0002", "+P", "7fe0,0010", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert sop_class in result.stdout or "ImageStorage" in result.stdout
        assert "PixelData" in result.stdout


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_gives_identical_bytes(name: str, tmp_path: Path) -> None:
    first = _generate(name, WORKLIST_STUDY, seed=11, directory=tmp_path / "a")
    again = _generate(name, WORKLIST_STUDY, seed=11, directory=tmp_path / "b")
    other = _generate(name, WORKLIST_STUDY, seed=12, directory=tmp_path / "c")
    assert [p.name for p in first] == [p.name for p in again]
    for a, b, c in zip(first, again, other, strict=True):
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_files_are_part10_explicit_little_endian_with_uids_under_the_root(
    name: str, tmp_path: Path
) -> None:
    sop_class, _ = GENERATORS[name]
    for path in _generate(name, MINIMAL_STUDY, seed=5, directory=tmp_path):
        raw = path.read_bytes()
        assert raw[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.file_meta.MediaStorageSOPClassUID == sop_class == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert uid.startswith(UID_ROOT)
            assert len(uid) <= 64
            assert re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", uid)
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_worklist_attributes_are_copied(name: str, tmp_path: Path) -> None:
    study = WORKLIST_STUDY
    uids = set()
    for path in _generate(name, study, seed=3, directory=tmp_path):
        ds = pydicom.dcmread(path)
        assert ds.SpecificCharacterSet == "ISO_IR 100"
        assert str(ds.PatientName) == study.patient_name
        assert ds.PatientID == study.patient_id
        assert ds.IssuerOfPatientID == study.issuer_of_patient_id
        assert ds.PatientBirthDate == study.birth_date
        assert ds.PatientSex == study.sex
        assert ds.AccessionNumber == study.accession_number
        assert ds.StudyInstanceUID == study.study_instance_uid
        assert str(ds.ReferringPhysicianName) == study.referring_physician
        assert ds.StudyDescription == study.study_description
        request = ds.RequestAttributesSequence[0]
        assert request.RequestedProcedureID == study.requested_procedure_id
        assert request.ScheduledProcedureStepID == study.scheduled_procedure_step_id
        assert request.AccessionNumber == study.accession_number
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == 2


def test_ct_refers_to_its_mpps(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_generate("ct", WORKLIST_STUDY, seed=3, directory=tmp_path)[0])
    assert ds.PerformedProcedureStepID == "PPS0042"
    ref = ds.ReferencedPerformedProcedureStepSequence[0]
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.3.1.2.3.3"
    assert ref.ReferencedSOPInstanceUID == derive_uid("test", "mpps")


def test_without_a_worklist_uids_derive_from_the_seed() -> None:
    def first_uids(seed: int) -> tuple[str, str, str]:
        ds = next(ct_series(MINIMAL_STUDY, CtSeriesSpec(slices=1, rows=8, columns=8), seed=seed))
        return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID

    assert first_uids(1) == first_uids(1)
    assert set(first_uids(1)).isdisjoint(first_uids(2))
    assert len(set(first_uids(1))) == 3


def test_ct_geometry_steps_along_z_and_shows_the_head(tmp_path: Path) -> None:
    spec = CtSeriesSpec(slices=5, slice_thickness=2.5, spacing=5.0, center_z=-25.0)
    images = list(ct_series(WORKLIST_STUDY, spec, seed=1))
    first = images[0]
    assert (first.Rows, first.Columns, first.BitsAllocated) == (512, 512, 16)
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([250 / 512] * 2, abs=1e-6)
    assert float(first.RescaleIntercept) == -1024 and float(first.RescaleSlope) == 1
    zs = [float(ds.ImagePositionPatient[2]) for ds in images]
    assert zs == pytest.approx([-35.0, -30.0, -25.0, -20.0, -15.0])
    assert [float(ds.SliceLocation) for ds in images] == pytest.approx(zs)
    assert [ds.InstanceNumber for ds in images] == [1, 2, 3, 4, 5]
    assert all(float(ds.SliceThickness) == 2.5 for ds in images)
    assert len({ds.FrameOfReferenceUID for ds in images}) == 1
    assert len({ds.SeriesInstanceUID for ds in images}) == 1

    middle = images[2]
    hu = middle.pixel_array.astype(np.float64) + float(middle.RescaleIntercept)
    x0, y0 = (float(v) for v in middle.ImagePositionPatient[:2])
    step = float(middle.PixelSpacing[0])

    def hu_at(x_mm: float, y_mm: float) -> float:
        col = round((x_mm - x0) / step)
        row = round((y_mm - y0) / step)
        return float(np.median(hu[row - 2 : row + 3, col - 2 : col + 3]))

    assert hu_at(-115.0, -115.0) == pytest.approx(-1000, abs=30)  # air in a corner
    assert hu_at(-22.0, 0.0) == pytest.approx(8, abs=15)  # CSF in a ventricle
    assert hu_at(0.0, 40.0) == pytest.approx(28, abs=15)  # white matter
    assert hu_at(0.0, -85.0) == pytest.approx(1100, abs=150)  # the skull, anterior
    assert hu_at(0.0, 104.0) == pytest.approx(180, abs=30)  # the head rest


def test_ct_pixels_change_along_z() -> None:
    spec = CtSeriesSpec(slices=3, rows=64, columns=64, slice_thickness=40.0)
    low, middle, high = (ds.pixel_array for ds in ct_series(MINIMAL_STUDY, spec, seed=1))
    assert not np.array_equal(low, middle) and not np.array_equal(middle, high)
    assert (middle > 1024 - 500).sum() > (high > 1024 - 500).sum()  # the head narrows upwards


def test_mr_contrast_follows_the_weighting() -> None:
    def csf_over_white_matter(weighting: str) -> float:
        spec = MrSeriesSpec(slices=1, center_z=-25.0, weighting=weighting)  # type: ignore[arg-type]
        ds = next(mr_series(MINIMAL_STUDY, spec, seed=1))
        image = ds.pixel_array.astype(np.float64)
        x0, y0 = (float(v) for v in ds.ImagePositionPatient[:2])
        step = float(ds.PixelSpacing[0])

        def at(x_mm: float, y_mm: float) -> float:
            col, row = round((x_mm - x0) / step), round((y_mm - y0) / step)
            return float(np.median(image[row - 1 : row + 2, col - 1 : col + 2]))

        return at(-22.0, 0.0) / at(0.0, 40.0)

    assert csf_over_white_matter("T2") > 2
    assert csf_over_white_matter("T1") < 0.5
    assert csf_over_white_matter("FLAIR") < 0.5


def test_us_region_calibration_measures_in_cm(tmp_path: Path) -> None:
    spec = UsSeriesSpec(images=1)
    ds = next(us_series(MINIMAL_STUDY, spec, seed=1))
    region = ds.SequenceOfUltrasoundRegions[0]
    assert region.PhysicalUnitsXDirection == 3
    assert region.PhysicalDeltaY * (region.RegionLocationMaxY1 - region.ReferencePixelY0) == (
        pytest.approx(spec.depth_mm / 10, rel=0.02)
    )
    assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.PhotometricInterpretation) == (
        600,
        800,
        8,
        "MONOCHROME2",
    )


def test_a_negative_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        next(ct_series(MINIMAL_STUDY, CtSeriesSpec(slices=1, rows=8, columns=8), seed=-1))
