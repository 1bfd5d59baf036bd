"""Client of a node's JSON admin API: what the TUI, `simlab admin`, faults and scoring use."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode


class AdminApiError(Exception):
    """The node answered with an error status, or could not be reached."""

    def __init__(self, status: int | None, message: str, detail: Any = None) -> None:
        super().__init__(f"{status or 'unreachable'}: {message}")
        self.status = status
        self.message = message
        self.detail = detail


class AdminClient:
    """A thin, synchronous JSON client bound to one node.

    Args:
        base_url: e.g. ``http://127.0.0.1:40123``.
        token: The lab's admin token.
        timeout: Seconds per request.
    """

    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """Send one request and return the decoded JSON answer."""
        params = {k: v for k, v in query.items() if v is not None}
        url = self.base_url + path + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http only)
        req.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}")
            except ValueError:
                payload = {}
            raise AdminApiError(
                exc.code, payload.get("error", exc.reason), payload.get("detail")
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminApiError(None, f"cannot reach {self.base_url}: {reason}") from None
        return json.loads(raw) if raw else None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def health(self) -> dict[str, Any]:
        return self.get("/health")


def path_part(value: str) -> str:
    """Quote a value (an AE title, a UID) for use as one path segment."""
    return quote(value, safe="")
