"""Modality Performed Procedure Step SCU (IHE RAD-6/7, PS3.4 F.7): N-CREATE and N-SET."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from fake_modalities.node.scu import associate
from simlab.common.dicom_status import describe, hex_status
from simlab.common.modality_config import ModalityConfig


def _now() -> tuple[str, str]:
    now = datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def in_progress_dataset(config: ModalityConfig, proc: dict[str, Any]) -> Dataset:
    """The N-CREATE attributes (PS3.4 F.7.2.1.1, IHE RAD TF-2 4.6), IN PROGRESS."""
    item = proc["item"]
    step = Dataset()
    step.StudyInstanceUID = proc["study_instance_uid"]
    step.ReferencedStudySequence = []
    step.AccessionNumber = item.get("accession_number", "")
    step.RequestedProcedureID = item.get("requested_procedure_id", "")
    step.RequestedProcedureDescription = item.get("requested_procedure_description", "")
    step.ScheduledProcedureStepID = item.get("scheduled_procedure_step_id", "")
    step.ScheduledProcedureStepDescription = item.get("scheduled_procedure_step_description", "")
    step.ScheduledProtocolCodeSequence = []
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = item.get("patient_name", "")
    ds.PatientID = item.get("patient_id", "")
    ds.PatientBirthDate = item.get("birth_date", "")
    ds.PatientSex = item.get("sex", "")
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = proc["pps_id"]
    ds.PerformedStationAETitle = config.dicom.ae_title
    ds.PerformedStationName = config.station_name
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = _now()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = item.get("scheduled_procedure_step_description", "")
    ds.PerformedProcedureTypeDescription = item.get("requested_procedure_description", "")
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = proc["modality"]
    ds.StudyID = item.get("requested_procedure_id", "")
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def final_dataset(config: ModalityConfig, proc: dict[str, Any], status: str) -> Dataset:
    """The N-SET attributes for COMPLETED or DISCONTINUED, with the Performed Series Sequence."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = _now()
    series_items = []
    for series in proc.get("series", []):
        s = Dataset()
        s.PerformingPhysicianName = ""
        s.ProtocolName = series.get("protocol_name", "") or series.get("description", "")
        s.OperatorsName = config.acquisition.operator_name
        s.SeriesInstanceUID = series["series_uid"]
        s.SeriesDescription = series.get("description", "")
        s.RetrieveAETitle = config.destination.ae_title
        refs = []
        for instance in series["instances"]:
            ref = Dataset()
            ref.ReferencedSOPClassUID = series["sop_class"]
            ref.ReferencedSOPInstanceUID = instance
            refs.append(ref)
        s.ReferencedImageSequence = refs
        s.ReferencedNonImageCompositeSOPInstanceSequence = []
        series_items.append(s)
    ds.PerformedSeriesSequence = series_items
    if status == "DISCONTINUED":
        reason = Dataset()
        reason.CodeValue = "110514"
        reason.CodingSchemeDesignator = "DCM"
        reason.CodeMeaning = "Incorrect worklist entry selected"
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [reason]
    return ds


def send_mpps(
    ae: AE,
    config: ModalityConfig,
    proc: dict[str, Any],
    create: bool,
    status: str,
    logger: logging.Logger,
) -> str:
    """N-CREATE (create=True) or N-SET the procedure's MPPS; return '' or the error text."""
    if config.mpps is None:
        logger.info("MPPS %s for %s not sent: no MPPS destination configured", status, proc["id"])
        return "no MPPS destination configured"
    ae.requested_contexts = []
    ae.add_requested_context(ModalityPerformedProcedureStep)
    verb = "N-CREATE" if create else "N-SET"
    opened = associate(ae, config.mpps, logger, f"MPPS {verb}")
    if not opened.ok:
        logger.warning("MPPS %s %s for %s failed: %s", verb, status, proc["id"], opened.error)
        return opened.error
    try:
        if create:
            rsp, _attrs = opened.assoc.send_n_create(
                in_progress_dataset(config, proc),
                ModalityPerformedProcedureStep,
                proc["mpps_uid"],
            )
        else:
            rsp, _attrs = opened.assoc.send_n_set(
                final_dataset(config, proc, status),
                ModalityPerformedProcedureStep,
                proc["mpps_uid"],
            )
    finally:
        if opened.assoc.is_established:
            opened.assoc.release()
    if not rsp:
        error = f"no {verb} response (DIMSE timeout or association aborted)"
        logger.warning("MPPS %s %s for %s failed: %s", verb, status, proc["id"], error)
        return error
    code = int(rsp.Status)
    text = f"{hex_status(code)} {describe(code)}"
    if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:
        logger.warning("MPPS %s %s %s for %s: %s", verb, status, proc["mpps_uid"], proc["id"], text)
        return text
    logger.info("MPPS %s %s %s for %s: %s", verb, status, proc["mpps_uid"], proc["id"], text)
    return ""
