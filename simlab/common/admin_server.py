"""The base of every node's JSON admin API: the node's "vendor console" over HTTP.

The TUI, `simlab admin`, faults and scoring all drive a node through this API and nothing else.
It is deliberately small: a table of routes `(method, path pattern, handler)`, JSON in and out,
one bearer token per lab compared in constant time, bounded request bodies, and a handler error
turned into a JSON error instead of a dropped connection.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import ValidationError

MAX_BODY_BYTES = 16 * 1024 * 1024


class ApiError(Exception):
    """An error the caller caused or should see, with its HTTP status."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


@dataclass
class Request:
    """What a route handler gets: path parameters, query, parsed JSON body."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def json_body(self) -> Any:
        """The JSON body, or ApiError 400 when there is none."""
        if self.body is None:
            raise ApiError(400, "a JSON body is required")
        return self.body

    def query_int(self, name: str, default: int, lo: int = 0, hi: int = 1_000_000) -> int:
        """An integer query parameter, clamped to [lo, hi]; 400 when not a number."""
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            return max(lo, min(hi, int(raw)))
        except ValueError as exc:
            raise ApiError(400, f"query parameter {name!r} must be an integer") from exc


Handler = Callable[[Request], Any]


@dataclass(frozen=True)
class Route:
    """One row of the routing table. `pattern` is a path like '/studies/{uid}'."""

    method: str
    pattern: str
    handler: Handler

    def compile(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern)
        return re.compile(f"^{regex}$")


class AdminServer:
    """A threaded HTTP server that dispatches JSON requests to route handlers.

    Args:
        host: Bind address (loopback by default in every node config).
        port: TCP port.
        token: The lab's admin token; every request must carry `Authorization: Bearer <token>`.
        routes: The routing table.
        logger: Where request failures are logged.
    """

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        routes: Iterable[Route],
        logger: logging.Logger,
    ) -> None:
        self._token = token.encode()
        self._routes = [(r.method, r.compile(), r.handler) for r in routes]
        self._logger = logger
        handler_cls = self._make_handler_class()
        self._httpd = ThreadingHTTPServer((host, port), handler_cls)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="admin-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def authorised(self, header: str | None) -> bool:
        """Constant-time comparison of a bearer token with the lab's token."""
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), self._token)

    def log_refusal(
        self, method: str, path: str, peer: tuple[str, int], status: int, payload: Any
    ) -> None:
        """One log line per refused request: a wrong token is a security event, a refused
        config change is what explains "I changed it but nothing happened"."""
        error = payload.get("error", "") if isinstance(payload, dict) else ""
        detail = payload.get("detail") if isinstance(payload, dict) else None
        fields = ""
        if isinstance(detail, list):
            fields = "; " + ", ".join(f"{d.get('loc')}: {d.get('msg')}" for d in detail[:5])
        level = logging.ERROR if status >= 500 else logging.WARNING
        self._logger.log(
            level,
            "admin API %s %s from %s:%d refused: %s%s",
            method,
            path.split("?", 1)[0],
            peer[0],
            peer[1],
            f"{status_phrase(status)} {error}".strip(),
            fields,
        )

    def dispatch(self, request: Request) -> tuple[int, Any]:
        """Find the route and run it; map errors to HTTP statuses."""
        allowed: list[str] = []
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            # Path parameters arrive percent-encoded (AE titles with spaces, link names
            # with '>'); handlers see the decoded value.
            request.params = {k: unquote(v) for k, v in match.groupdict().items()}
            try:
                result = handler(request)
            except ApiError as exc:
                return exc.status, {"error": exc.message, "detail": exc.detail}
            except ValidationError as exc:
                return 422, {"error": "invalid value", "detail": _validation_detail(exc)}
            except Exception:
                self._logger.exception("admin API %s %s failed", request.method, request.path)
                return 500, {"error": "internal error; see the node log"}
            if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int):
                return result
            return 200, result
        if allowed:
            return 405, {"error": f"method not allowed; use {', '.join(sorted(set(allowed)))}"}
        return 404, {"error": f"no such endpoint: {request.path}"}

    def _make_handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "simlab-admin/1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the node log records what matters, not every poll."""

            def _reply(self, status: int, payload: Any) -> None:
                if status >= 400:
                    server.log_refusal(
                        self.command, self.path, self.client_address, status, payload
                    )
                body = json.dumps(payload, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                if not server.authorised(self.headers.get("Authorization")):
                    self._reply(401, {"error": "missing or wrong admin token"})
                    return
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                body: Any = None
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    self._reply(400, {"error": "bad Content-Length"})
                    return
                if length < 0 or length > MAX_BODY_BYTES:
                    self.close_connection = True
                    self._reply(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
                    return
                if length:
                    raw = self.rfile.read(length)
                    try:
                        body = json.loads(raw)
                    except (ValueError, UnicodeDecodeError):
                        self._reply(400, {"error": "body is not valid JSON"})
                        return
                request = Request(
                    method=self.command,
                    path=url.path.rstrip("/") or "/",
                    params={},
                    query=query,
                    body=body,
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
                status, payload = server.dispatch(request)
                self._reply(status, payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return _Handler


def _validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"]} for err in exc.errors()
    ]


def status_phrase(code: int) -> str:
    """'404 Not Found' style text for client error messages."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)
