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


PeerTable = Callable[[Any], list[tuple[str, RemoteAe]]]
"""Given a node's config, its DICOM peers as (name, entry); the name is a role ('destination')
or the peer's AE title."""

ECHO_TIMEOUT_MAX = 60.0


def ae_table_peers(cfg: Any) -> list[tuple[str, RemoteAe]]:
    """The peers of a node with an AE table (PACS, RIS, viewer), named by AE title."""
    return [(ae.ae_title, ae) for ae in cfg.ae_table]


def role_peers(*paths: str, ae_table: bool = False) -> PeerTable:
    """Peers held in named config fields ('destination', 'retrieve.provider'), named by the
    field's last part; unset (None) fields are skipped; optionally the AE table as well."""

    def table(cfg: Any) -> list[tuple[str, RemoteAe]]:
        out = []
        for path in paths:
            value: Any = cfg
            for part in path.split("."):
                value = getattr(value, part, None)
            if isinstance(value, RemoteAe):
                out.append((path.rsplit(".", 1)[-1], value))
        return out + (ae_table_peers(cfg) if ae_table else [])

    return table


def dicom_echo_routes(node: LiveConfigNode[Any], peers: PeerTable = ae_table_peers) -> list[Route]:
    """POST /dicom/echo {"ae_title": X[, "host", "port", "timeout"]}: the console's "Verify".

    A real C-ECHO from this node with its own calling AE title to a configured peer, found by
    AE title or by role name; with host and port given, to any AE. Answers {ok, status, text}
    with the association's real codes (A-ASSOCIATE-RJ 1/1/7, "connection refused", "timeout").
    """

    def echo(req: Request) -> dict[str, Any]:
        body = json_object(req)
        wanted = str(body.get("ae_title") or "").strip()
        if not wanted:
            raise ApiError(422, "ae_title (a peer's AE title or role) is required")
        try:
            timeout = min(float(body.get("timeout", 10.0)), ECHO_TIMEOUT_MAX)
        except (TypeError, ValueError):
            raise ApiError(422, "timeout must be a number of seconds") from None
        cfg = node.get_config()
        table = peers(cfg)
        if body.get("host") and body.get("port"):
            peer = RemoteAe.model_validate(
                {"ae_title": wanted, "host": body["host"], "port": body["port"]}
            )
        else:
            found = [ae for name, ae in table if name == wanted] or [
                ae for _name, ae in table if ae.ae_title == wanted
            ]
            if not found:
                known = ", ".join(
                    f"{name} ({ae.ae_title}@{ae.host}:{ae.port})"
                    if name != ae.ae_title
                    else f"{ae.ae_title}@{ae.host}:{ae.port}"
                    for name, ae in table
                )
                raise ApiError(404, f"{wanted} is not a configured peer (peers: {known or 'none'})")
            peer = found[0]
        # Imported here, not at the top: pynetdicom brings pydicom and numpy (about 35 MB of a
        # process), and the network proxy, which has these routes but no DICOM, never echoes.
        from simlab.common.dicom_association import Timeouts, verify

        own = cfg.dicom.ae_title
        outcome = verify(own, peer.host, peer.port, peer.ae_title, Timeouts.uniform(timeout))
        node.logger.info(
            "verify (C-ECHO) %s -> %s@%s:%d: %s",
            own,
            peer.ae_title,
            peer.host,
            peer.port,
            outcome.text,
        )
        return {
            **outcome.as_dict(),
            "calling_ae": own,
            "called_ae": peer.ae_title,
            "host": peer.host,
            "port": peer.port,
        }

    return [Route("POST", "/dicom/echo", echo)]
