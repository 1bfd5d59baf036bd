"""The network node's admin API: its links, their toxics (set and cleared live) and counters.

    GET    /links                              every link with its toxics and counters
    GET    /links/{name}                       one link
    PATCH  /links/{name}                       {"enabled": false} partitions it; upstream, text
    GET    /links/{name}/toxics                the toxics in force on a link
    PUT    /links/{name}/toxics/{toxic}        set (add or replace) a toxic: {"type": ..., ...}
    DELETE /links/{name}/toxics/{toxic}        clear one toxic
    DELETE /links/{name}/toxics                clear every toxic of a link

Every change goes through the config model (validated), is persisted atomically and applied
before the call returns; the node log records it. Health, config, reload and log are the routes
every node shares (simlab/common/standard_routes.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.proxy_config import Link, ProxyConfig, Toxic
from simlab.common.standard_routes import config_routes, health_routes, json_object, log_routes

if TYPE_CHECKING:
    from simlab.nodes.proxy.node import ProxyNode

_TOXIC = TypeAdapter(Toxic)
_LINK_FIELDS = {"enabled", "upstream_host", "upstream_port", "description"}


def _toxic_text(toxic: Toxic) -> str:
    attrs = toxic.model_dump(exclude={"name", "type", "direction", "probability"})
    shown = ", ".join(f"{k}={v}" for k, v in attrs.items() if v is not None)
    return f"{toxic.type} ({toxic.direction}, p={toxic.probability}{', ' if shown else ''}{shown})"


def build_routes(node: ProxyNode) -> list[Route]:
    """The routing table of the network admin API."""

    def link_of(req: Request) -> Link:
        name = req.params["name"]
        link = node.get_config().link(name)
        if link is None:
            known = ", ".join(lk.name for lk in node.get_config().links) or "none"
            raise ApiError(404, f"no link {name!r} (links: {known})")
        return link

    def replace_link(new: Link) -> None:
        cfg = node.get_config()
        links = [new if lk.name == new.name else lk for lk in cfg.links]
        node.apply_config(ProxyConfig.model_validate({**cfg.model_dump(), "links": links}))

    def view(link: Link, counters: dict[str, dict[str, Any]]) -> dict[str, Any]:
        cfg = node.get_config()
        return {
            **link.model_dump(mode="json"),
            "listen": f"{cfg.host}:{link.listen_port}",
            "upstream": f"{link.upstream_host}:{link.upstream_port}",
            **counters.get(link.name, {"listening": False, "error": "", "active": 0}),
        }

    def health_details() -> dict[str, Any]:
        counters = node.proxy.snapshot()
        links = [
            {
                "name": lk.name,
                "listen_port": lk.listen_port,
                "upstream": f"{lk.upstream_host}:{lk.upstream_port}",
                "enabled": lk.enabled,
                "listening": counters.get(lk.name, {}).get("listening", False),
                "toxics": [t.name for t in lk.toxics],
            }
            for lk in node.get_config().links
        ]
        return {"links": links, "services": {lk["name"]: lk["listening"] for lk in links}}

    def list_links(_req: Request) -> list[dict[str, Any]]:
        counters = node.proxy.snapshot()
        return [view(lk, counters) for lk in node.get_config().links]

    def get_link(req: Request) -> dict[str, Any]:
        return view(link_of(req), node.proxy.snapshot())

    def patch_link(req: Request) -> dict[str, Any]:
        body = json_object(req)
        unknown = set(body) - _LINK_FIELDS
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        with node.edit_lock:
            link = link_of(req)
            new = Link.model_validate({**link.model_dump(), **body})
            replace_link(new)
        changes = ", ".join(f"{k}={v}" for k, v in sorted(body.items()))
        node.logger.warning("link %s changed by admin: %s", link.name, changes or "nothing")
        return view(new, node.proxy.snapshot())

    def list_toxics(req: Request) -> list[dict[str, Any]]:
        return [t.model_dump(mode="json") for t in link_of(req).toxics]

    def put_toxic(req: Request) -> dict[str, Any]:
        name = req.params["toxic"]
        with node.edit_lock:
            link = link_of(req)
            toxic = _TOXIC.validate_python({**json_object(req), "name": name})
            toxics = [t for t in link.toxics if t.name != name]
            at = next((i for i, t in enumerate(link.toxics) if t.name == name), len(toxics))
            toxics.insert(at, toxic)
            replace_link(link.model_copy(update={"toxics": toxics}))
        node.logger.warning("link %s: toxic %r set: %s", link.name, name, _toxic_text(toxic))
        return toxic.model_dump(mode="json")

    def delete_toxic(req: Request) -> dict[str, Any]:
        name = req.params["toxic"]
        with node.edit_lock:
            link = link_of(req)
            toxics = [t for t in link.toxics if t.name != name]
            if len(toxics) == len(link.toxics):
                raise ApiError(404, f"link {link.name} has no toxic {name!r}")
            replace_link(link.model_copy(update={"toxics": toxics}))
        node.logger.warning("link %s: toxic %r cleared", link.name, name)
        return {"link": link.name, "removed": [name]}

    def clear_toxics(req: Request) -> dict[str, Any]:
        with node.edit_lock:
            link = link_of(req)
            removed = [t.name for t in link.toxics]
            if removed:
                replace_link(link.model_copy(update={"toxics": []}))
        if removed:
            node.logger.warning("link %s: every toxic cleared (%s)", link.name, ", ".join(removed))
        return {"link": link.name, "removed": removed}

    return [
        *health_routes(node, health_details),
        *config_routes(node),
        *log_routes(node),
        Route("GET", "/links", list_links),
        Route("GET", "/links/{name}", get_link),
        Route("PATCH", "/links/{name}", patch_link),
        Route("GET", "/links/{name}/toxics", list_toxics),
        Route("DELETE", "/links/{name}/toxics", clear_toxics),
        Route("PUT", "/links/{name}/toxics/{toxic}", put_toxic),
        Route("DELETE", "/links/{name}/toxics/{toxic}", delete_toxic),
    ]
