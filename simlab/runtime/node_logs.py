"""The protocol traffic in the nodes' own logs, as events: associations, DIMSE statuses, ACKs.

A PACS administrator watches the interface engine's and the PACS's logs scroll by; the lab's
dashboard does the same. `NodeLogTail` reads what each node appended to its `node.log` since the
last call and keeps the lines a trainee would watch:
- associations accepted, rejected, released or aborted (with their A-ASSOCIATE-RJ codes);
- DIMSE operations with their final status (C-FIND/C-MOVE/C-GET, MPPS, storage commitment,
  and every C-STORE that did not succeed — the successful ones are summed up by the
  association's release line);
- HL7 messages with their ACK (MSA-1 AA/AE/AR, or the timeout waiting for it);
- any warning or error of the node itself.
Configuration changes and admin-API chatter are left out: the console's log tab has them, and
some of them are how a fault was injected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

LINE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) (?P<level>[A-Z]+)\s+"
    r"(?P<logger>[\w.-]+): (?P<message>.*)$"
)
"""`2026-11-23 18:21:02.751 WARNING pacs: …`: simlab.common.node_logging.LOG_FORMAT."""
PROTOCOL = re.compile(
    r"association|C-(STORE|FIND|MOVE|GET|ECHO)|N-(CREATE|SET|ACTION|EVENT-REPORT)|MPPS|"
    r"storage commitment|MWL|HL7|ACK|MLLP|retrieve",
    re.IGNORECASE,
)
QUIET = re.compile(r"^C-STORE .*: 0x0000 Success$")
"""One line per stored image: summed up by the association's release line."""
NOT_SHOWN = re.compile(r"admin API|AE table:|config", re.IGNORECASE)
MAX_BYTES = 256 * 1024
"""At most this much of a log is read per call (a flood is skipped, not buffered)."""


@dataclass(frozen=True)
class LogLine:
    """One line of a node's log."""

    node: str
    ts: float
    level: str
    logger: str
    message: str

    def as_event(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "kind": "node_log",
            "node": self.node,
            "level": self.level,
            "message": self.message,
        }


def parse_line(node: str, line: str) -> LogLine | None:
    """A log line, or None for continuation lines (tracebacks) and anything unparsable."""
    match = LINE.match(line.rstrip("\r\n"))
    if match is None:
        return None
    try:
        ts = datetime.strptime(match["date"], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except ValueError:
        return None
    return LogLine(node, ts, match["level"], match["logger"], match["message"])


def worth_showing(line: LogLine) -> bool:
    """True for the traffic a trainee watches (see the module docstring)."""
    if line.logger != line.node or NOT_SHOWN.search(line.message):
        return False
    if line.level in ("WARNING", "ERROR", "CRITICAL"):
        return True
    return bool(PROTOCOL.search(line.message)) and not QUIET.match(line.message)


class NodeLogTail:
    """Follows the logs of a set of nodes; `new_lines()` returns what they appended since."""

    def __init__(self, logs: dict[str, Path], backlog: int = 0) -> None:
        """Follow `logs` (node id → node.log), starting `backlog` bytes before their end."""
        self._logs = dict(logs)
        self._offsets: dict[str, int] = {}
        for node, path in self._logs.items():
            size = path.stat().st_size if path.exists() else 0
            self._offsets[node] = max(0, size - backlog)

    def add(self, node: str, path: Path) -> None:
        """Follow one more node (from the start of its log)."""
        self._logs.setdefault(node, path)

    def new_lines(self) -> list[LogLine]:
        """Every worth-showing line appended since the last call, in time order."""
        out: list[LogLine] = []
        for node, path in self._logs.items():
            out.extend(line for line in self._read(node, path) if worth_showing(line))
        out.sort(key=lambda line: line.ts)
        return out

    def _read(self, node: str, path: Path) -> Iterable[LogLine]:
        try:
            size = path.stat().st_size
        except OSError:
            return []
        offset = self._offsets.get(node, 0)
        if size < offset:  # the log was rotated or truncated: start again
            offset = 0
        if size - offset > MAX_BYTES:
            offset = size - MAX_BYTES
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(size - offset)
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._offsets[node] = offset + end + 1
        text = data[: end + 1].decode("utf-8", errors="replace")
        return [p for p in (parse_line(node, raw) for raw in text.splitlines()) if p is not None]
