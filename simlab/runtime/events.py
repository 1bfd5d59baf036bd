"""The lab's event log: one JSON object a line, appended, readable by a person and by tools.

Everything the lab does (node started, exited, health changed) lands here with a timestamp, so
the journal of a session can be rebuilt from the lab directory alone.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any


class EventLog:
    """Append-only JSONL file; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, kind: str, **data: Any) -> dict[str, Any]:
        """Record one event and return it."""
        event = {"ts": round(time.time(), 3), "kind": kind, **data}
        line = json.dumps(event, default=str, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
        return event

    def read(self, limit: int | None = None) -> list[dict[str, Any]]:
        """All events (or the last `limit`), skipping a torn last line after a crash."""
        if not self.path.exists():
            return []
        events = []
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events[-limit:] if limit else events
