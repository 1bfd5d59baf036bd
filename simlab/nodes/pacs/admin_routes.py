"""The PACS admin API: the vendor console that the TUI, `simlab admin`, faults and scoring use.

Every change goes through the config model (validated), is persisted atomically and applied live;
the node log records who changed what.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.config import PacsConfig, RemoteAe
from simlab.common.node_logging import tail

if TYPE_CHECKING:
    from simlab.nodes.pacs.node import PacsNode


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


def build_routes(node: PacsNode) -> list[Route]:
    """The routing table of the PACS admin API."""

    def health(_req: Request) -> dict[str, Any]:
        cfg = node.get_config()
        return {
            "status": "ok",
            "node_id": cfg.node_id,
            "role": cfg.role,
            "pid": _pid(),
            "uptime_s": round(time.time() - node.started_at, 3),
            "ae_title": cfg.dicom.ae_title,
            "dicom_port": cfg.dicom.port,
            "hl7_port": cfg.hl7.port,
            "services": {"dicom": node.dicom.listening, "hl7": node.hl7.listening},
        }

    def get_config(_req: Request) -> dict[str, Any]:
        return node.get_config().model_dump(mode="json")

    def put_config(req: Request) -> dict[str, Any]:
        new = PacsConfig.model_validate(req.json_body())
        return _applied(new)

    def patch_config(req: Request) -> dict[str, Any]:
        body = req.json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "a JSON object is required")
        merged = deep_merge(node.get_config().model_dump(mode="json"), body)
        return _applied(PacsConfig.model_validate(merged))

    def _applied(new: PacsConfig) -> dict[str, Any]:
        old = node.get_config()
        if new.node_id != old.node_id or new.admin != old.admin:
            raise ApiError(409, "node_id and admin settings cannot change on a running node")
        restarted = node.apply_config(new)
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

    def studies(req: Request) -> list[dict[str, Any]]:
        return node.archive.index.list_studies(
            patient_id=req.query.get("patient_id"),
            accession=req.query.get("accession"),
            limit=req.query_int("limit", 100, 1, 10_000),
            offset=req.query_int("offset", 0),
        )

    def study(req: Request) -> dict[str, Any]:
        detail = node.archive.index.study_detail(req.params["uid"])
        if detail is None:
            raise ApiError(404, f"no study {req.params['uid']}")
        return detail

    def delete_study(req: Request) -> dict[str, Any]:
        uid = req.params["uid"]
        removed = node.archive.delete_study(uid)
        if not removed:
            raise ApiError(404, f"no study {uid}")
        node.logger.info("study %s deleted by admin (%d instances)", uid, removed)
        return {"deleted": uid, "instances": removed}

    def patients(req: Request) -> list[dict[str, Any]]:
        return node.archive.index.list_patients(limit=req.query_int("limit", 100, 1, 10_000))

    def orders(req: Request) -> list[dict[str, Any]]:
        return node.hl7.orders(limit=req.query_int("limit", 100, 1, 10_000))

    def hl7_patients(req: Request) -> list[dict[str, Any]]:
        return node.hl7.registered_patients(limit=req.query_int("limit", 100, 1, 10_000))

    def hl7_messages(req: Request) -> list[dict[str, Any]]:
        return node.hl7.message_log(limit=req.query_int("limit", 100, 1, 10_000))

    def stats(_req: Request) -> dict[str, Any]:
        return node.archive.stats()

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
        Route("GET", "/studies", studies),
        Route("GET", "/studies/{uid}", study),
        Route("DELETE", "/studies/{uid}", delete_study),
        Route("GET", "/patients", patients),
        Route("GET", "/orders", orders),
        Route("GET", "/hl7/messages", hl7_messages),
        Route("GET", "/hl7/patients", hl7_patients),
        Route("GET", "/stats", stats),
        Route("GET", "/log", log),
    ]


def _pid() -> int:
    import os

    return os.getpid()
