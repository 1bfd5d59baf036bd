"""The live event log: the lab's journal as the trainee may see it, one log line an event.

Faults are the scenario's secret: their events (and anything done as the scenario or the
instructor) never show here. Node events, the trainee's and the department's actions,
activity, hints and objective checks do.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

HIDDEN_KINDS = {"fault_injected", "fault_reverted", "fault_failed"}
HIDDEN_ACTORS = {"scenario", "instructor"}

KIND_STYLE = {
    "action": "cyan",
    "activity": "magenta",
    "hint_taken": "yellow",
    "objectives_checked": "green",
    "node_exited": "bold red",
    "node_stopped": "red",
    "lab_failed": "bold red",
}


LEVEL_STYLE = {"WARNING": "bold yellow", "ERROR": "bold red", "CRITICAL": "bold red"}
"""The node column of a node's log line, by the line's level (INFO: blue)."""
LEVEL_TEXT_STYLE = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}


def visible(event: dict[str, Any]) -> bool:
    """True when a trainee may see this journal event."""
    if event.get("kind") in HIDDEN_KINDS:
        return False
    return event.get("actor") not in HIDDEN_ACTORS


def describe(event: dict[str, Any]) -> str:
    """The event's text after its time and kind, e.g. `trainee config.set(node=ct-1) ok: …`."""
    kind = event.get("kind", "")
    extra = {k: v for k, v in event.items() if k not in ("ts", "kind")}
    if kind == "action":
        args = ", ".join(f"{k}={v}" for k, v in (extra.get("args") or {}).items())
        result = (
            f"ok: {extra.get('result', '')}" if extra.get("ok") else f"FAILED: {extra.get('error')}"
        )
        return f"{extra.get('actor', '')} {extra.get('action')}({args}) {result}".strip()
    if kind == "objectives_checked":
        met, failed = extra.get("met") or [], extra.get("failed") or []
        return f"{len(met)} met, {len(failed)} not yet"
    if kind == "hint_taken":
        return f"{extra.get('actor', '')} took hint {extra.get('hint')} (-{extra.get('cost')} pts)"
    if kind == "activity":
        state = "ok" if extra.pop("ok", True) else "FAILED"
        rest = ", ".join(f"{k}={v}" for k, v in extra.items())
        return f"{rest} {state}"
    if kind in ("node_started", "node_exited", "node_stopped", "node_restarted"):
        rest = ", ".join(f"{k}={v}" for k, v in extra.items() if k not in ("node", "pid"))
        return f"{extra.get('node', '')} {rest}".strip()
    return ", ".join(f"{k}={v}" for k, v in extra.items())


def clock(ts: float, started_at: float | None) -> str:
    """'+02:15' from the scenario's start, or the local wall clock when there is no start."""
    if started_at is not None:
        seconds = int(ts - started_at)
        sign = "-" if seconds < 0 else "+"
        seconds = abs(seconds)
        return f"{sign}{seconds // 60:02d}:{seconds % 60:02d}"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def format_event(event: dict[str, Any], started_at: float | None) -> Text | None:
    """One log line, or None when the trainee may not see the event."""
    if not visible(event):
        return None
    kind = str(event.get("kind", ""))
    line = Text()
    line.append(clock(float(event.get("ts", 0.0)), started_at), style="dim")
    if kind == "node_log":
        # A node's own log line: the node in the kind column, coloured by its level.
        level = str(event.get("level", "INFO"))
        line.append(f" {event.get('node', '')!s:<18} ", style=LEVEL_STYLE.get(level, "blue"))
        line.append(str(event.get("message", "")), style=LEVEL_TEXT_STYLE.get(level, ""))
        return line
    line.append(f" {kind.replace('_', ' '):<18} ", style=KIND_STYLE.get(kind, "bold"))
    line.append(describe(event))
    return line


class EventLogView(RichLog):
    """Journal events appended as they come (the dashboard's worker tails the file)."""

    DEFAULT_CSS = """
    EventLogView { border: round $primary; height: 1fr; min-height: 4; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            id=id, wrap=True, markup=False, highlight=False, max_lines=2000, min_width=20
        )
        self.border_title = "Events"
        self.started_at: float | None = None
        self.shown = 0

    def add_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            line = format_event(event, self.started_at)
            if line is not None:
                self.write(line)
                self.shown += 1
