"""The modality's admin API: the technologist's console and the lab's handle on it."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.modality_config import ModalityConfig
from simlab.common.node_logging import tail

if TYPE_CHECKING:
    from fake_modalities.node.node import ModalityNode


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


def _object(req: Request, required: bool = False) -> dict[str, Any]:
    if req.body is None and not required:
        return {}
    body = req.json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "a JSON object is required")
    return body


def build_routes(node: ModalityNode) -> list[Route]:
    """The routing table of the modality admin API."""

    def health(_req: Request) -> dict[str, Any]:
        cfg = node.get_config()
        return {
            "status": "ok",
            "node_id": cfg.node_id,
            "role": cfg.role,
            "profile": cfg.profile,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - node.started_at, 3),
            "ae_title": cfg.dicom.ae_title,
            "dicom_port": cfg.dicom.port,
            "services": {"dicom": node.listener.listening, "send_queue": node.sender.alive},
        }

    def get_config(_req: Request) -> dict[str, Any]:
        return node.get_config().model_dump(mode="json")

    def patch_config(req: Request) -> dict[str, Any]:
        merged = deep_merge(node.get_config().model_dump(mode="json"), _object(req, True))
        new = ModalityConfig.model_validate(merged)
        old = node.get_config()
        if new.node_id != old.node_id or new.admin != old.admin:
            raise ApiError(409, "node_id and admin settings cannot change on a running node")
        restarted = node.apply_config(new)
        return {"config": new.model_dump(mode="json"), "restarted": restarted}

    def reload(_req: Request) -> dict[str, Any]:
        return {"restarted": node.reload(), "config": node.get_config().model_dump(mode="json")}

    def worklist_query(req: Request) -> dict[str, Any]:
        return node.query_worklist(_object(req))

    def worklist(_req: Request) -> dict[str, Any]:
        return node.worklist()

    def start(req: Request) -> dict[str, Any]:
        return node.procedure_view(node.start_procedure(_object(req)))

    def acquire(req: Request) -> dict[str, Any]:
        result = node.acquire(req.params["proc_id"])
        return {**result, "procedure": node.procedure_view(result["procedure"])}

    def complete(req: Request) -> dict[str, Any]:
        return node.procedure_view(node.complete(req.params["proc_id"]))

    def discontinue(req: Request) -> dict[str, Any]:
        return node.procedure_view(node.discontinue(req.params["proc_id"]))

    def unscheduled(req: Request) -> tuple[int, dict[str, Any]]:
        return 201, node.procedure_view(node.register_unscheduled(_object(req, True)))

    def procedures(_req: Request) -> list[dict[str, Any]]:
        return [node.procedure_view(p) for p in node.store.procedures()]

    def procedure(req: Request) -> dict[str, Any]:
        proc = node.store.procedure(req.params["proc_id"])
        if proc is None:
            raise ApiError(404, f"no procedure {req.params['proc_id']}")
        return node.procedure_view(proc)

    def queue(req: Request) -> dict[str, Any]:
        counts, items = node.store.queue_snapshot(
            req.query.get("state"), req.query.get("procedure_id")
        )
        return {
            "counts": counts,
            "items": [
                {
                    "id": i["id"],
                    "procedure_id": i["procedure_id"],
                    "sop_class": i["sop_class"],
                    "sop_instance": i["sop_instance"],
                    "state": i["state"],
                    "status": None if i["status"] is None else f"0x{i['status']:04X}",
                    "reason": i["reason"],
                    "attempts": i["attempts"],
                    "next_attempt": i["next_attempt"] if i["next_attempt"] > 0 else None,
                }
                for i in items
            ],
        }

    def retry(req: Request) -> dict[str, Any]:
        body = _object(req)
        ids = body.get("ids")
        if ids is not None and (
            not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)
        ):
            raise ApiError(400, "ids must be a list of queue item numbers")
        count = node.store.retry(ids)
        node.logger.info("send queue: %d failed items queued again by the operator", count)
        node.sender.wake()
        return {"retried": count}

    def delete_item(req: Request) -> dict[str, Any]:
        try:
            item_id = int(req.params["item_id"])
        except ValueError as exc:
            raise ApiError(400, "queue item ids are numbers") from exc
        if not node.store.delete_item(item_id):
            raise ApiError(404, f"no queue item {item_id} (or it is being sent)")
        node.logger.info("send queue: item %d deleted by the operator", item_id)
        return {"deleted": item_id}

    def stats(_req: Request) -> dict[str, Any]:
        procs = node.store.procedures()
        by_state: dict[str, int] = {}
        for p in procs:
            by_state[p["state"]] = by_state.get(p["state"], 0) + 1
        commits: dict[str, int] = {}
        for c in node.store.commitments():
            commits[c["state"]] = commits.get(c["state"], 0) + 1
        return {
            "procedures": by_state,
            "queue": node.store.queue_counts(),
            "send_batches": node.sender.batches,
            "commitments": commits,
        }

    def log(req: Request) -> dict[str, Any]:
        return {
            "lines": tail(
                node.log_file, req.query_int("lines", 200, 1, 10_000), req.query.get("contains")
            )
        }

    return [
        Route("GET", "/health", health),
        Route("GET", "/config", get_config),
        Route("PATCH", "/config", patch_config),
        Route("POST", "/reload", reload),
        Route("POST", "/worklist/query", worklist_query),
        Route("GET", "/worklist", worklist),
        Route("POST", "/procedures/start", start),
        Route("GET", "/procedures", procedures),
        Route("GET", "/procedures/{proc_id}", procedure),
        Route("POST", "/procedures/{proc_id}/acquire", acquire),
        Route("POST", "/procedures/{proc_id}/complete", complete),
        Route("POST", "/procedures/{proc_id}/discontinue", discontinue),
        Route("POST", "/patients/unscheduled", unscheduled),
        Route("GET", "/queue", queue),
        Route("POST", "/queue/retry", retry),
        Route("DELETE", "/queue/{item_id}", delete_item),
        Route("GET", "/stats", stats),
        Route("GET", "/log", log),
    ]
