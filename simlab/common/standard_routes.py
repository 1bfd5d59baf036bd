"""The admin-API routes every node has: health, config, reload, AE table, log.

A vendor console looks the same on every box of a department in these respects, and so do
simlab's; each node adds its own routes (studies, queues, procedures) beside these.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.config import NodeConfig, RemoteAe
from simlab.common.live_config import LiveConfigNode
from simlab.common.node_logging import tail


class HasAeTable(Protocol):
    """A config with an AE table (PACS, RIS, viewer)."""

    ae_table: list[RemoteAe]


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


def json_object(req: Request, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; {} when optional and absent; 400 otherwise."""
    if req.body is None and not required:
        return {}
    body = req.json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "a JSON object is required")
    return body


def health_routes(node: LiveConfigNode[Any], details: Callable[[], dict[str, Any]]) -> list[Route]:
    """GET /health: status, identity, pid, uptime, plus the node's own details (ports, services)."""

    def health(_req: Request) -> dict[str, Any]:
        cfg = node.get_config()
        return {
            "status": "ok",
            "node_id": cfg.node_id,
            "role": cfg.role,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - node.started_at, 3),
            **details(),
        }

    return [Route("GET", "/health", health)]


def config_routes(node: LiveConfigNode[Any]) -> list[Route]:
    """GET/PUT/PATCH /config and POST /reload, validated by the node's own config model."""

    def model() -> type[NodeConfig]:
        return type(node.get_config())

    def apply(new: NodeConfig) -> dict[str, Any]:
        old = node.get_config()
        if new.node_id != old.node_id or new.admin != old.admin:
            raise ApiError(409, "node_id and admin settings cannot change on a running node")
        try:
            restarted = node.apply_config(new)
        except OSError as exc:
            raise ApiError(409, f"a listener cannot bind: {exc.strerror or exc}") from exc
        return {"config": new.model_dump(mode="json"), "restarted": restarted}

    def get_config(_req: Request) -> dict[str, Any]:
        return node.get_config().model_dump(mode="json")

    def put_config(req: Request) -> dict[str, Any]:
        return apply(model().model_validate(json_object(req)))

    def patch_config(req: Request) -> dict[str, Any]:
        merged = deep_merge(node.get_config().model_dump(mode="json"), json_object(req))
        return apply(model().model_validate(merged))

    def reload(_req: Request) -> dict[str, Any]:
        return {"restarted": node.reload(), "config": node.get_config().model_dump(mode="json")}

    return [
        Route("GET", "/config", get_config),
        Route("PUT", "/config", put_config),
        Route("PATCH", "/config", patch_config),
        Route("POST", "/reload", reload),
    ]


def ae_table_routes(node: LiveConfigNode[Any]) -> list[Route]:
    """GET /ae-table, PUT and DELETE /ae-table/{ae_title}: the peers a node knows."""

    def table() -> list[RemoteAe]:
        cfg: HasAeTable = node.get_config()
        return cfg.ae_table

    def list_table(_req: Request) -> list[dict[str, Any]]:
        return [ae.model_dump(mode="json") for ae in table()]

    def put_ae(req: Request) -> dict[str, Any]:
        entry = RemoteAe.model_validate({**json_object(req), "ae_title": req.params["ae_title"]})
        rows = [ae for ae in table() if ae.ae_title != entry.ae_title] + [entry]
        node.apply_config(node.get_config().model_copy(update={"ae_table": rows}))
        node.logger.info("AE table: %s set to %s:%d", entry.ae_title, entry.host, entry.port)
        return entry.model_dump(mode="json")

    def delete_ae(req: Request) -> dict[str, Any]:
        title = req.params["ae_title"].strip()
        rows = [ae for ae in table() if ae.ae_title != title]
        if len(rows) == len(table()):
            raise ApiError(404, f"AE title {title!r} is not in the AE table")
        node.apply_config(node.get_config().model_copy(update={"ae_table": rows}))
        node.logger.info("AE table: %s removed", title)
        return {"removed": title}

    return [
        Route("GET", "/ae-table", list_table),
        Route("PUT", "/ae-table/{ae_title}", put_ae),
        Route("DELETE", "/ae-table/{ae_title}", delete_ae),
    ]


def log_routes(node: LiveConfigNode[Any]) -> list[Route]:
    """GET /log?lines=&contains=: the end of the node log."""

    def log(req: Request) -> dict[str, Any]:
        lines = req.query_int("lines", 200, 1, 10_000)
        return {"lines": tail(node.log_file, lines, req.query.get("contains"))}

    return [Route("GET", "/log", log)]
