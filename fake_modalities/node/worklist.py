"""Modality Worklist query (IHE RAD-5, PS3.4 K.6): C-FIND SCU to the MWL provider."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from fake_modalities.node.scu import associate
from simlab.common.dicom_status import describe, hex_status
from simlab.common.modality_config import ModalityConfig

_FIELDS = [
    ("patient_name", "PatientName"),
    ("patient_id", "PatientID"),
    ("birth_date", "PatientBirthDate"),
    ("sex", "PatientSex"),
    ("accession_number", "AccessionNumber"),
    ("requested_procedure_id", "RequestedProcedureID"),
    ("requested_procedure_description", "RequestedProcedureDescription"),
    ("study_instance_uid", "StudyInstanceUID"),
    ("referring_physician", "ReferringPhysicianName"),
]
_STEP_FIELDS = [
    ("scheduled_station_ae_title", "ScheduledStationAETitle"),
    ("scheduled_start_date", "ScheduledProcedureStepStartDate"),
    ("scheduled_start_time", "ScheduledProcedureStepStartTime"),
    ("modality", "Modality"),
    ("scheduled_performing_physician", "ScheduledPerformingPhysicianName"),
    ("scheduled_procedure_step_id", "ScheduledProcedureStepID"),
    ("scheduled_procedure_step_description", "ScheduledProcedureStepDescription"),
]


class WorklistError(Exception):
    """The query could not be made or the provider answered with an error status."""


def effective_filters(config: ModalityConfig, overrides: dict[str, Any]) -> dict[str, str]:
    """The matching keys of a query: the configured defaults, then the operator's overrides.

    Keys: station_ae_title, modality, date, patient_id, patient_name, accession_number.
    A value of None or '' in the overrides removes that filter (universal matching).
    """
    q = config.worklist_query
    filters: dict[str, str] = {}
    if q.station_ae_title is not None:
        filters["station_ae_title"] = q.station_ae_title or config.dicom.ae_title
    if q.modality is not None:
        filters["modality"] = q.modality or config.profile
    if q.date is not None:
        filters["date"] = q.date
    for key, value in overrides.items():
        if value in (None, ""):
            filters.pop(key, None)
        else:
            filters[key] = str(value)
    if filters.get("date") == "today":
        filters["date"] = date.today().strftime("%Y%m%d")
    return filters


def build_identifier(filters: dict[str, str]) -> Dataset:
    """The C-FIND identifier: every return key asked for, the filters as matching keys."""
    ds = Dataset()
    for _field, keyword in _FIELDS:
        setattr(ds, keyword, "")
    step = Dataset()
    for _field, keyword in _STEP_FIELDS:
        setattr(step, keyword, "")
    step.ScheduledStationAETitle = filters.get("station_ae_title", "")
    step.Modality = filters.get("modality", "")
    step.ScheduledProcedureStepStartDate = filters.get("date", "")
    ds.ScheduledProcedureStepSequence = [step]
    ds.PatientID = filters.get("patient_id", "")
    ds.PatientName = filters.get("patient_name", "")
    ds.AccessionNumber = filters.get("accession_number", "")
    return ds


def item_from_identifier(ds: Dataset) -> dict[str, str]:
    """A worklist item as plain strings (the console's row, and the procedure's source)."""
    item = {field: str(ds.get(keyword, "") or "") for field, keyword in _FIELDS}
    steps = ds.get("ScheduledProcedureStepSequence") or [Dataset()]
    item.update({field: str(steps[0].get(keyword, "") or "") for field, keyword in _STEP_FIELDS})
    return item


def query_worklist(
    ae: AE, config: ModalityConfig, filters: dict[str, str], logger: logging.Logger
) -> list[dict[str, str]]:
    """C-FIND the MWL provider; return the matching items (raises WorklistError)."""
    if config.mwl is None:
        raise WorklistError("no worklist provider configured (mwl is empty)")
    ae.requested_contexts = []
    ae.add_requested_context(ModalityWorklistInformationFind)
    opened = associate(ae, config.mwl, logger, "MWL C-FIND")
    if not opened.ok:
        raise WorklistError(opened.error)
    items: list[dict[str, str]] = []
    final = None
    try:
        for status, identifier in opened.assoc.send_c_find(
            build_identifier(filters), ModalityWorklistInformationFind
        ):
            if not status:
                raise WorklistError("no C-FIND response (DIMSE timeout or association aborted)")
            final = int(status.Status)
            if final in (0xFF00, 0xFF01) and identifier is not None:
                items.append(item_from_identifier(identifier))
    finally:
        if opened.assoc.is_established:
            opened.assoc.release()
    keys = ", ".join(f"{k}={v}" for k, v in sorted(filters.items())) or "(none)"
    if final not in (0x0000, None):
        logger.warning(
            "MWL query [%s]: %s %s after %d items",
            keys,
            hex_status(final),
            describe(final),
            len(items),
        )
        raise WorklistError(f"worklist query failed: {hex_status(final)} {describe(final)}")
    logger.info("MWL query [%s]: %d items", keys, len(items))
    return items
