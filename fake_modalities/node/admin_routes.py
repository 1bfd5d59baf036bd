"""The modality's admin API: the technologist's console and the lab's handle on it.

Health, config, reload and log are the routes every node shares
(simlab/common/standard_routes.py); these are the modality's own: worklist, procedures, queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.standard_routes import (
    config_routes,
    dicom_echo_routes,
    health_routes,
    json_object,
    log_routes,
    role_peers,
)

if TYPE_CHECKING:
    from fake_modalities.node.node import ModalityNode


def build_routes(node: ModalityNode) -> list[Route]:
    """The routing table of the modality admin API."""

    def health_details() -> dict[str, Any]:
        cfg = node.get_config()
        return {
            "profile": cfg.profile,
            "ae_title": cfg.dicom.ae_title,
            "dicom_port": cfg.dicom.port,
            "services": {"dicom": node.listener.listening, "send_queue": node.sender.alive},
        }

    def worklist_query(req: Request) -> dict[str, Any]:
        return node.query_worklist(json_object(req, required=False))

    def worklist(_req: Request) -> dict[str, Any]:
        return node.worklist()

    def start(req: Request) -> dict[str, Any]:
        return node.procedure_view(node.start_procedure(json_object(req, required=False)))

    def acquire(req: Request) -> dict[str, Any]:
        result = node.acquire(req.params["proc_id"])
        return {**result, "procedure": node.procedure_view(result["procedure"])}

    def complete(req: Request) -> dict[str, Any]:
        return node.procedure_view(node.complete(req.params["proc_id"]))

    def discontinue(req: Request) -> dict[str, Any]:
        return node.procedure_view(node.discontinue(req.params["proc_id"]))

    def unscheduled(req: Request) -> tuple[int, dict[str, Any]]:
        return 201, node.procedure_view(node.register_unscheduled(json_object(req, required=True)))

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
        body = json_object(req, required=False)
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

    return [
        *health_routes(node, health_details),
        *config_routes(node),
        *log_routes(node),
        *dicom_echo_routes(node, role_peers("destination", "mwl", "mpps")),
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
    ]
