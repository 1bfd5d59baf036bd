"""The viewer's admin API: open a study, the reading list, config, AE table, log, statistics,
and a dcmdump-like view of one cached instance (`GET /instances/{sop_uid}/dump`, the same lines
as the PACS's, from simlab/common/dicom_dump.py; the file is found through the viewer's index).

Every change goes through the config model (validated), is persisted atomically and applied
live; the node log records it. Health, config, reload, AE table and log are the routes every
node shares (simlab/common/standard_routes.py); the rest are the viewer's own.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydicom.errors import InvalidDicomError

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.dicom_dump import dump_lines
from simlab.common.standard_routes import (
    ae_table_routes,
    config_routes,
    dicom_echo_routes,
    health_routes,
    log_routes,
    role_peers,
)
from simlab.nodes.viewer.retrieve import OpenFailed

if TYPE_CHECKING:
    from simlab.nodes.viewer.node import ViewerNode

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_HTTP_STATUS = {
    "not_found": 404,
    "timeout": 504,
}
"""HTTP status of a failed open by kind; anything else the peer refused is 502 Bad Gateway."""


def _open_request(body: Any) -> tuple[str | None, str | None, str | None]:
    if not isinstance(body, dict):
        raise ApiError(400, "a JSON object is required")
    unknown = set(body) - {"accession", "study_uid", "method"}
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    accession = body.get("accession")
    study_uid = body.get("study_uid")
    method = body.get("method")
    if (accession is None) == (study_uid is None):
        raise ApiError(400, 'give exactly one of "accession" or "study_uid"')
    if accession is not None and (
        not isinstance(accession, str) or not 0 < len(accession.strip()) <= 16
    ):
        raise ApiError(400, "accession must be 1-16 characters (VR SH)")
    if study_uid is not None and (
        not isinstance(study_uid, str) or len(study_uid) > 64 or not _UID_RE.match(study_uid)
    ):
        raise ApiError(400, "study_uid must be a DICOM UID (digits and dots, at most 64)")
    if method is not None and method not in ("c-move", "c-get"):
        raise ApiError(400, 'method must be "c-move" or "c-get"')
    return (accession.strip() if accession else None), study_uid, method


def build_routes(node: ViewerNode) -> list[Route]:
    """The routing table of the viewer admin API."""

    def health_details() -> dict[str, Any]:
        cfg = node.get_config()
        return {
            "ae_title": cfg.dicom.ae_title,
            "dicom_port": cfg.dicom.port,
            "services": {"dicom": node.storage.listening},
            "qr_provider": cfg.retrieve.provider.model_dump(mode="json"),
            "retrieve_method": cfg.retrieve.method,
        }

    def open_study(req: Request) -> Any:
        accession, study_uid, method = _open_request(req.json_body())
        try:
            return node.retriever.open_study(
                accession=accession, study_uid=study_uid, method=method
            )
        except OpenFailed as exc:
            status = _HTTP_STATUS.get(exc.kind, 502)
            raise ApiError(status, str(exc.outcome.get("error")), exc.outcome) from None

    def opens(req: Request) -> list[dict[str, Any]]:
        """Newest first; ?accession= / ?study_uid= keep the attempts about that study."""
        limit = req.query_int("limit", 100, 1, 10_000)
        accession, study_uid = req.query.get("accession"), req.query.get("study_uid")
        if not accession and not study_uid:
            return node.store.opens(limit=limit)
        out = []
        for record in node.store.opens(limit=10_000):
            asked = record.get("request", {})
            found = record.get("studies", [])
            if (
                accession
                and (
                    asked.get("accession") == accession
                    or any(s.get("accession") == accession for s in found)
                )
            ) or (
                study_uid
                and (
                    asked.get("study_uid") == study_uid
                    or any(s.get("study_uid") == study_uid for s in found)
                )
            ):
                out.append(record)
            if len(out) >= limit:
                break
        return out

    def studies(req: Request) -> list[dict[str, Any]]:
        return node.store.list_studies(
            accession=req.query.get("accession"),
            patient_id=req.query.get("patient_id"),
            limit=req.query_int("limit", 100, 1, 10_000),
        )

    def study(req: Request) -> dict[str, Any]:
        detail = node.store.study_detail(req.params["uid"])
        if detail is None:
            raise ApiError(404, f"no study {req.params['uid']} on this viewer")
        return detail

    def delete_study(req: Request) -> dict[str, Any]:
        uid = req.params["uid"]
        removed = node.store.delete_study(uid)
        if removed < 0:
            raise ApiError(404, f"no study {uid} on this viewer")
        node.logger.info("study %s deleted by admin (%d instances)", uid, removed)
        return {"deleted": uid, "instances": removed}

    def reading_list(req: Request) -> list[dict[str, Any]]:
        state = req.query.get("state")
        if state not in (None, "read", "unread"):
            raise ApiError(400, 'state must be "read" or "unread"')
        rows = node.store.list_studies(limit=req.query_int("limit", 100, 1, 10_000))
        out = []
        for row in rows:
            row_state = "read" if row["read"] else "unread"
            if state in (None, row_state):
                out.append(
                    {
                        "study_uid": row["study_uid"],
                        "accession": row["accession"],
                        "patient_id": row["patient_id"],
                        "patient_name": row["patient_name"],
                        "study_date": row["study_date"],
                        "study_description": row["study_description"],
                        "instances": row["instances"],
                        "received_at": row["last_received"],
                        "state": row_state,
                        "read_at": row["read_at"],
                    }
                )
        return out

    def mark_read(req: Request) -> dict[str, Any]:
        uid = req.params["uid"]
        if not node.store.mark_read(uid):
            raise ApiError(404, f"no study {uid} on this viewer")
        node.logger.info("study %s marked read", uid)
        return {"study_uid": uid, "state": "read"}

    def instance_dump(req: Request) -> dict[str, Any]:
        uid = req.params["sop_uid"]
        path = node.store.file_of(uid)
        if path is None:
            raise ApiError(404, f"no instance {uid} on this viewer")
        try:
            return {"sop_uid": uid, "lines": dump_lines(path)}
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise ApiError(500, f"cannot read the file of {uid}: {exc}") from None

    def stats(_req: Request) -> dict[str, Any]:
        out = node.store.stats()
        out["dicom"] = dict(node.storage.counters)
        history = node.store.opens(limit=10_000)
        out["opens"] = {
            "total": len(history),
            "ok": sum(1 for o in history if o.get("ok")),
            "failed": sum(1 for o in history if not o.get("ok")),
        }
        return out

    return [
        *health_routes(node, health_details),
        *config_routes(node),
        *ae_table_routes(node),
        *dicom_echo_routes(node, role_peers("retrieve.provider", ae_table=True)),
        *log_routes(node),
        Route("POST", "/studies/open", open_study),
        Route("GET", "/opens", opens),
        Route("GET", "/studies", studies),
        Route("GET", "/studies/{uid}", study),
        Route("DELETE", "/studies/{uid}", delete_study),
        Route("GET", "/reading-list", reading_list),
        Route("POST", "/reading-list/{uid}/read", mark_read),
        Route("GET", "/instances/{sop_uid}/dump", instance_dump),
        Route("GET", "/stats", stats),
    ]
