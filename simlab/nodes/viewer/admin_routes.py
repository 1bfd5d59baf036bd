"""The viewer's admin API: open a study, the reading list, config, AE table, log, statistics.

Every change goes through the config model (validated), is persisted atomically and applied
live; the node log records it.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.config import RemoteAe
from simlab.common.node_logging import tail
from simlab.common.viewer_config import ViewerConfig
from simlab.nodes.viewer.retrieve import OpenFailed

if TYPE_CHECKING:
    from simlab.nodes.viewer.node import ViewerNode

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_HTTP_STATUS = {
    "not_found": 404,
    "timeout": 504,
}
"""HTTP status of a failed open by kind; anything else the peer refused is 502 Bad Gateway."""


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386-style merge: dicts merge key by key, anything else replaces, None deletes."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


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
            "services": {"dicom": node.storage.listening},
            "qr_provider": cfg.retrieve.provider.model_dump(mode="json"),
            "retrieve_method": cfg.retrieve.method,
        }

    def get_config(_req: Request) -> dict[str, Any]:
        return node.get_config().model_dump(mode="json")

    def put_config(req: Request) -> dict[str, Any]:
        return _applied(ViewerConfig.model_validate(req.json_body()))

    def patch_config(req: Request) -> dict[str, Any]:
        body = req.json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "a JSON object is required")
        merged = deep_merge(node.get_config().model_dump(mode="json"), body)
        return _applied(ViewerConfig.model_validate(merged))

    def _applied(new: ViewerConfig) -> dict[str, Any]:
        old = node.get_config()
        if new.node_id != old.node_id or new.admin != old.admin:
            raise ApiError(409, "node_id and admin settings cannot change on a running node")
        try:
            restarted = node.apply_config(new)
        except OSError as exc:
            raise ApiError(409, f"DICOM listener cannot bind: {exc.strerror or exc}") from exc
        return {"config": new.model_dump(mode="json"), "restarted": restarted}

    def reload(_req: Request) -> dict[str, Any]:
        return {"restarted": node.reload(), "config": node.get_config().model_dump(mode="json")}

    def ae_table(_req: Request) -> list[dict[str, Any]]:
        return [ae.model_dump(mode="json") for ae in node.get_config().ae_table]

    def put_ae(req: Request) -> dict[str, Any]:
        body = req.json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "a JSON object is required")
        entry = RemoteAe.model_validate({**body, "ae_title": req.params["ae_title"]})
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
        table = [ae for ae in cfg.ae_table if ae.ae_title != title]
        node.apply_config(cfg.model_copy(update={"ae_table": table}))
        node.logger.info("AE table: %s removed", title)
        return {"removed": title}

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
        Route("POST", "/studies/open", open_study),
        Route("GET", "/opens", opens),
        Route("GET", "/studies", studies),
        Route("GET", "/studies/{uid}", study),
        Route("DELETE", "/studies/{uid}", delete_study),
        Route("GET", "/reading-list", reading_list),
        Route("POST", "/reading-list/{uid}/read", mark_read),
        Route("GET", "/stats", stats),
        Route("GET", "/log", log),
    ]
