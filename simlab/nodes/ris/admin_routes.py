"""The RIS admin API: the vendor console that the TUI, `simlab admin`, faults and scoring use.

Health, config, reload, AE table and log are the routes every node shares
(simlab/common/standard_routes.py); these are the RIS's own. Patients and orders created here
queue their HL7 (ADT^A04/A08/A40, ORM^O01 NW/CA) like a RIS front desk does; the outbound queue
can be listed, retried, edited and deleted entry by entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.standard_routes import (
    ae_table_routes,
    config_routes,
    dicom_echo_routes,
    health_routes,
    json_object,
    log_routes,
)
from simlab.nodes.ris.outbound import QueueError
from simlab.nodes.ris.scheduling import SchedulingError
from simlab.nodes.ris.store import QUEUE_STATES

if TYPE_CHECKING:
    from simlab.nodes.ris.node import RisNode


def _entry_id(req: Request) -> int:
    try:
        return int(req.params["entry_id"])
    except ValueError:
        raise ApiError(400, "queue entry id must be a number") from None


def build_routes(node: RisNode) -> list[Route]:
    """The routing table of the RIS admin API."""

    def scheduling(call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except SchedulingError as exc:
            raise ApiError(
                exc.status, str(exc), {"field": exc.field} if exc.field else None
            ) from None

    def queue_action(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except QueueError as exc:
            raise ApiError(exc.status, str(exc)) from None

    def health_details() -> dict[str, Any]:
        cfg = node.get_config()
        return {
            "ae_title": cfg.dicom.ae_title,
            "dicom_port": cfg.dicom.port,
            "hl7_port": cfg.hl7.port,
            "services": {
                "dicom": node.dicom.listening,
                "hl7": node.hl7.listening,
                "outbound": node.queue.senders,
            },
            "queue": node.store.queue_counts(),
        }

    # -- patients and orders -----------------------------------------------------------------

    def patients(req: Request) -> list[dict[str, Any]]:
        return node.store.patients(req.query_int("limit", 100, 1, 10_000), req.query.get("status"))

    def patient(req: Request) -> dict[str, Any]:
        row = node.store.patient(req.params["patient_id"])
        if row is None:
            raise ApiError(404, f"no patient {req.params['patient_id']}")
        return {**row, "orders": node.store.orders(patient_id=row["patient_id"])}

    def register(req: Request) -> tuple[int, dict[str, Any]]:
        stored, created = scheduling(node.scheduler.register_patient, json_object(req), "admin API")
        return (201 if created else 200), stored

    def update_patient(req: Request) -> dict[str, Any]:
        return scheduling(
            node.scheduler.update_patient, req.params["patient_id"], json_object(req), "admin API"
        )

    def merge_patient(req: Request) -> dict[str, Any]:
        prior = str(json_object(req).get("prior_id") or "")
        if not prior:
            raise ApiError(422, "prior_id (the patient merged away) is required")
        return scheduling(
            node.scheduler.merge_patient, prior, req.params["patient_id"], "admin API"
        )

    def orders(req: Request) -> list[dict[str, Any]]:
        return node.store.orders(
            status=req.query.get("status"),
            patient_id=req.query.get("patient_id"),
            limit=req.query_int("limit", 1000, 1, 100_000),
        )

    def order(req: Request) -> dict[str, Any]:
        row = node.store.order(req.params["accession"])
        if row is None:
            raise ApiError(404, f"no order {req.params['accession']}")
        return row

    def place_order(req: Request) -> tuple[int, dict[str, Any]]:
        return 201, scheduling(node.scheduler.place_order, json_object(req), "admin API")

    def cancel_order(req: Request) -> dict[str, Any]:
        return scheduling(node.scheduler.cancel_order, req.params["accession"], "admin API")

    def worklist(req: Request) -> list[dict[str, Any]]:
        identifier = None
        q = req.query
        if any(q.get(k) for k in ("station", "modality", "date", "patient_id", "accession")):
            identifier = Dataset()
            identifier.PatientID = q.get("patient_id", "")
            identifier.AccessionNumber = q.get("accession", "")
            sps = Dataset()
            sps.ScheduledStationAETitle = q.get("station", "")
            sps.Modality = q.get("modality", "")
            sps.ScheduledProcedureStepStartDate = q.get("date", "")
            identifier.ScheduledProcedureStepSequence = [sps]
        items = node.dicom.worklist(identifier)
        out = []
        for item in items:
            sps_item = item.ScheduledProcedureStepSequence[0]
            out.append(
                {
                    "accession": item.AccessionNumber,
                    "patient_id": item.PatientID,
                    "patient_name": str(item.PatientName),
                    "study_uid": item.StudyInstanceUID,
                    "requested_procedure_id": item.RequestedProcedureID,
                    "sps_id": sps_item.ScheduledProcedureStepID,
                    "station_ae": sps_item.ScheduledStationAETitle,
                    "modality": sps_item.Modality,
                    "start_date": sps_item.ScheduledProcedureStepStartDate,
                    "start_time": sps_item.ScheduledProcedureStepStartTime,
                    "description": sps_item.ScheduledProcedureStepDescription,
                }
            )
        return out

    def mpps_list(req: Request) -> list[dict[str, Any]]:
        return node.store.mpps_list(req.query_int("limit", 100, 1, 10_000))

    def mpps(req: Request) -> dict[str, Any]:
        row = node.store.mpps(req.params["uid"])
        if row is None:
            raise ApiError(404, f"no MPPS instance {req.params['uid']}")
        return row

    # -- outbound queue ----------------------------------------------------------------------

    def queue(req: Request) -> list[dict[str, Any]]:
        state = req.query.get("state")
        if state and state not in QUEUE_STATES:
            raise ApiError(400, f"state must be one of {', '.join(QUEUE_STATES)}")
        return node.store.queue(
            state, req.query.get("destination"), req.query_int("limit", 1000, 1)
        )

    def queue_entry(req: Request) -> dict[str, Any]:
        row = node.store.queue_entry(_entry_id(req))
        if row is None:
            raise ApiError(404, f"no queued message #{req.params['entry_id']}")
        return row

    def queue_retry(req: Request) -> dict[str, Any]:
        return queue_action(node.queue.retry, _entry_id(req))

    def queue_edit(req: Request) -> dict[str, Any]:
        message = json_object(req).get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(422, "message (the raw HL7 text) is required")
        return queue_action(node.queue.edit, _entry_id(req), message)

    def queue_inject(req: Request) -> tuple[int, dict[str, Any]]:
        body = json_object(req)
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(422, "message (the raw HL7 text) is required")
        destination = str(body.get("destination") or "pacs")
        return 201, queue_action(node.queue.inject, destination, message)

    def queue_delete(req: Request) -> dict[str, Any]:
        return queue_action(node.queue.delete, _entry_id(req))

    def hl7_messages(req: Request) -> list[dict[str, Any]]:
        return node.store.inbound(req.query_int("limit", 100, 1, 10_000))

    def stats(_req: Request) -> dict[str, Any]:
        return node.store.stats()

    return [
        *health_routes(node, health_details),
        *config_routes(node),
        *ae_table_routes(node),
        *dicom_echo_routes(node),
        *log_routes(node),
        Route("GET", "/patients", patients),
        Route("POST", "/patients", register),
        Route("GET", "/patients/{patient_id}", patient),
        Route("PATCH", "/patients/{patient_id}", update_patient),
        Route("POST", "/patients/{patient_id}/merge", merge_patient),
        Route("GET", "/orders", orders),
        Route("POST", "/orders", place_order),
        Route("GET", "/orders/{accession}", order),
        Route("DELETE", "/orders/{accession}", cancel_order),
        Route("POST", "/orders/{accession}/cancel", cancel_order),
        Route("GET", "/worklist", worklist),
        Route("GET", "/mpps", mpps_list),
        Route("GET", "/mpps/{uid}", mpps),
        Route("GET", "/queue", queue),
        Route("POST", "/queue", queue_inject),
        Route("GET", "/queue/{entry_id}", queue_entry),
        Route("POST", "/queue/{entry_id}/retry", queue_retry),
        Route("PUT", "/queue/{entry_id}", queue_edit),
        Route("DELETE", "/queue/{entry_id}", queue_delete),
        Route("GET", "/hl7/messages", hl7_messages),
        Route("GET", "/stats", stats),
    ]
