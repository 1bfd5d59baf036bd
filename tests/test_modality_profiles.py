"""In-process checks of the modality's building blocks: profiles, encodings, typing errors."""

from __future__ import annotations

import random
from pathlib import Path

import pydicom
import pytest

from fake_modalities.node import acquisition
from fake_modalities.node.typos import keyed, mistype
from simlab.common.modality_config import (
    PROFILE_DEFAULTS,
    SENDABLE_TRANSFER_SYNTAXES,
    ModalityConfig,
)

ITEM = {
    "patient_id": "MRN1",
    "patient_name": "DOE^JANE",
    "accession_number": "ACC1",
    "requested_procedure_id": "RP1",
    "scheduled_procedure_step_id": "SPS1",
    "scheduled_start_date": "20261123",
    "scheduled_start_time": "0930",
}


def _config(profile: str, syntax: str) -> ModalityConfig:
    return ModalityConfig.model_validate(
        {
            "node_id": "m-1",
            "profile": profile,
            "admin": {"port": 1},
            "dicom": {"ae_title": f"{profile}_1", "port": 2},
            "destination": {"ae_title": "PACS", "port": 3},
            "acquisition": {
                "images_per_series": 2,
                "rows": 32,
                "columns": 48,
                "transfer_syntax": syntax,
            },
        }
    )


@pytest.mark.parametrize("profile", sorted(PROFILE_DEFAULTS))
@pytest.mark.parametrize("syntax", SENDABLE_TRANSFER_SYNTAXES)
def test_every_profile_in_every_transfer_syntax(tmp_path: Path, profile: str, syntax: str) -> None:
    cfg = _config(profile, syntax)
    proc = {
        "item": ITEM,
        "study_instance_uid": "1.2.826.0.1.3680043.8.498.77",
        "pps_id": "P0001",
        "mpps_uid": "1.2.826.0.1.3680043.8.498.78",
        "mpps_created": True,
        "seed": acquisition.procedure_seed(cfg.seed, ITEM, 1),
    }
    datasets = acquisition.generate(cfg, proc, 1)
    assert len(datasets) == 2
    path = acquisition.write_durably(acquisition.encode(datasets[0], syntax), tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert (ds.Rows, ds.Columns) == (32, 48)
    assert ds.pixel_array.shape[-2:] == (32, 48) or ds.pixel_array.shape[:2] == (32, 48)
    assert (ds.PatientID, ds.AccessionNumber) == ("MRN1", "ACC1")
    assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.77"
    assert ds.StudyDate == "20261123"
    assert ds.PerformedProcedureStepID == "P0001"


def test_profile_defaults_are_lab_friendly() -> None:
    cfg = _config("CT", SENDABLE_TRANSFER_SYNTAXES[0])
    cfg = cfg.model_copy(
        update={
            "acquisition": cfg.acquisition.model_copy(
                update={"images_per_series": None, "rows": None, "columns": None}
            )
        }
    )
    assert cfg.images_per_series() == 16
    assert cfg.image_size() == (512, 512)


def test_typing_error_kinds() -> None:
    assert mistype("12345", random.Random(1))[1] in {"transposed", "dropped", "doubled"}
    seen = {mistype("Ab12", random.Random(i))[1] for i in range(200)}
    assert seen == {"transposed", "dropped", "doubled", "wrong case"}
    typed, kind = mistype("1122", random.Random(3))
    assert typed != "1122" and kind
    assert keyed("ACC1", 0.0, 1, 1, "accession_number") == ("ACC1", "")
    assert keyed("", 1.0, 1, 1, "accession_number") == ("", "")
    assert keyed("ACC1", 1.0, 1, 1, "x") == keyed("ACC1", 1.0, 1, 1, "x")
