"""The RIS admin API: the vendor console that the TUI, `simlab admin`, faults and scoring use.

Config changes are validated by RisConfig, persisted atomically and applied live. Patients and
orders created here queue their HL7 (ADT^A04/A08/A40, ORM^O01 NW/CA) like a RIS front desk does;
the outbound queue can be listed, retried, edited and deleted entry by entry.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.config import RemoteAe
from simlab.common.node_logging import tail
from simlab.common.ris_config import RisConfig
from simlab.nodes.ris.outbound import QueueError
from simlab.nodes.ris.scheduling import SchedulingError
from simlab.nodes.ris.store import QUEUE_STATES

if TYPE_CHECKING:
    from simlab.nodes.ris.node import RisNode


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386-style merge: dicts merge key by key, anything else replaces, None deletes."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _object(req: Request) -> dict[str, Any]:
    body = req.json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "a JSON object is required")
    return body


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

    def health(_req: Request) -> dict[str, Any]:
        cfg = node.get_config()
        return {
            "status": "ok",
            "node_id": cfg.node_id,
            "role": cfg.role,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - node.started_at, 3),
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

    def get_config(_req: Request) -> dict[str, Any]:
        return node.get_config().model_dump(mode="json")

    def _applied(new: RisConfig) -> dict[str, Any]:
        old = node.get_config()
        if new.node_id != old.node_id or new.admin != old.admin:
            raise ApiError(409, "node_id and admin settings cannot change on a running node")
        restarted = node.apply_config(new)
        return {"config": new.model_dump(mode="json"), "restarted": restarted}

    def put_config(req: Request) -> dict[str, Any]:
        return _applied(RisConfig.model_validate(_object(req)))

    def patch_config(req: Request) -> dict[str, Any]:
        merged = _merge(node.get_config().model_dump(mode="json"), _object(req))
        return _applied(RisConfig.model_validate(merged))

    def reload(_req: Request) -> dict[str, Any]:
        return {"restarted": node.reload(), "config": node.get_config().model_dump(mode="json")}

    def ae_table(_req: Request) -> list[dict[str, Any]]:
        return [ae.model_dump(mode="json") for ae in node.get_config().ae_table]

    def put_ae(req: Request) -> dict[str, Any]:
        entry = RemoteAe.model_validate({**_object(req), "ae_title": req.params["ae_title"]})
        cfg = node.get_config()
        table = [ae for ae in cfg.ae_table if ae.ae_title != entry.ae_title] + [entry]
        node.apply_config(cfg.model_copy(update={"ae_table": table}))
        node.logger.info("AE table: %s set to %s:%d", entry.ae_title, entry.host, entry.port)
        return entry.model_dump(mode="json")

    def delete_ae(req: Request) -> dict[str, Any]:
        title = req.params["ae_title"].strip()
        cfg = node.get_config()
        if cfg.ae_entry(title) is None:
            raise ApiError(404, f"AE title {title!r} is not in the AE table")
        node.apply_config(
            cfg.model_copy(update={"ae_table": [a for a in cfg.ae_table if a.ae_title != title]})
        )
        node.logger.info("AE table: %s removed", title)
        return {"removed": title}

    # -- patients and orders -----------------------------------------------------------------

    def patients(req: Request) -> list[dict[str, Any]]:
        return node.store.patients(req.query_int("limit", 100, 1, 10_000), req.query.get("status"))

    def patient(req: Request) -> dict[str, Any]:
        row = node.store.patient(req.params["patient_id"])
        if row is None:
            raise ApiError(404, f"no patient {req.params['patient_id']}")
        return {**row, "orders": node.store.orders(patient_id=row["patient_id"])}

    def register(req: Request) -> tuple[int, dict[str, Any]]:
        stored, created = scheduling(node.scheduler.register_patient, _object(req), "admin API")
        return (201 if created else 200), stored

    def update_patient(req: Request) -> dict[str, Any]:
        return scheduling(
            node.scheduler.update_patient, req.params["patient_id"], _object(req), "admin API"
        )

    def merge_patient(req: Request) -> dict[str, Any]:
        prior = str(_object(req).get("prior_id") or "")
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
        return 201, scheduling(node.scheduler.place_order, _object(req), "admin API")

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
        message = _object(req).get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(422, "message (the raw HL7 text) is required")
        return queue_action(node.queue.edit, _entry_id(req), message)

    def queue_delete(req: Request) -> dict[str, Any]:
        return queue_action(node.queue.delete, _entry_id(req))

    def hl7_messages(req: Request) -> list[dict[str, Any]]:
        return node.store.inbound(req.query_int("limit", 100, 1, 10_000))

    def stats(_req: Request) -> dict[str, Any]:
        return node.store.stats()

    def log(req: Request) -> dict[str, Any]:
        return {
            "lines": tail(
                node.log_file, req.query_int("lines", 200, 1, 10_000), req.query.get("contains")
            )
        }

    return [
        Route("GET", "/health", health),
        Route("GET", "/config", get_config),
        Route("PUT", "/config", put_config),
        Route("PATCH", "/config", patch_config),
        Route("POST", "/reload", reload),
        Route("GET", "/ae-table", ae_table),
        Route("PUT", "/ae-table/{ae_title}", put_ae),
        Route("DELETE", "/ae-table/{ae_title}", delete_ae),
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
        Route("GET", "/queue/{entry_id}", queue_entry),
        Route("POST", "/queue/{entry_id}/retry", queue_retry),
        Route("PUT", "/queue/{entry_id}", queue_edit),
        Route("DELETE", "/queue/{entry_id}", queue_delete),
        Route("GET", "/hl7/messages", hl7_messages),
        Route("GET", "/stats", stats),
        Route("GET", "/log", log),
    ]
