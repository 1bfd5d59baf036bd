"""One human-readable log file per node.

The log is what an administrator reads to diagnose: association events, statuses and HL7 ACKs,
one line each, in the lab's node directory. pynetdicom's own chatter is kept to warnings; the
node writes its own association lines instead.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from pathlib import Path

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup_node_logging(node_id: str, log_file: Path, *, echo: bool = False) -> logging.Logger:
    """Send the node's logger (and pynetdicom warnings) to its log file; return the logger."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if echo:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        root.addHandler(stream)
    root.setLevel(logging.INFO)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("hl7apy").setLevel(logging.WARNING)
    return logging.getLogger(node_id)


def tail(log_file: Path, lines: int = 200, contains: str | None = None) -> list[str]:
    """The last `lines` lines of a log file (optionally only those containing a text)."""
    if not log_file.exists():
        return []
    keep: deque[str] = deque(maxlen=max(1, min(lines, 10_000)))
    with open(log_file, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if contains is None or contains.lower() in line.lower():
                keep.append(line.rstrip("\n"))
    return list(keep)
