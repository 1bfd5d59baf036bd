"""Send one HL7 v2 message over MLLP and read its ACK, as an interface analyst's test tool does.

Framing and the socket are simlab/common/mllp.py's client; this adds what an administrator reads
in the answer: MSA-1 (AA/AE/AR), MSA-2, MSA-3 and the ERR segment (v2.5 ERR-2 location, ERR-3
code from table 0357, ERR-4 severity, ERR-8 user message). A failure to deliver is an answer
too ("connection refused", "timeout waiting for ACK"), never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from simlab.common.hl7_messages import Hl7Error, read_ack
from simlab.common.mllp import MllpError, send_message

_CHARSETS = {"UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii", "": "latin-1"}
"""MSH-18 (HL7 table 0211) -> codec; absent means the receiver's default (Latin-1 here)."""


@dataclass
class Hl7Result:
    """What sending one message came to."""

    ok: bool
    ack_code: str | None
    """MSA-1, None when no ACK came back."""
    text: str
    control_id: str = ""
    """MSA-2: the MSH-10 the ACK answers."""
    errors: list[dict[str, str]] = field(default_factory=list)
    """ERR segments: code (table 0357) and location (segment^seq^field)."""
    ack: str = ""
    """The ACK's text, segments separated by newlines."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "ack_code": self.ack_code,
            "text": self.text,
            "control_id": self.control_id,
            "errors": self.errors,
            "ack": self.ack,
        }


def normalise(message: str) -> str:
    """Segments separated by CR, whatever line ends a file or a terminal gave them."""
    lines = [line for line in re.split(r"\r\n|\r|\n", message.strip()) if line.strip()]
    return "\r".join(lines) + "\r"


def _codec(text: str) -> str:
    fields = text.split("\r", 1)[0].split(text[3:4] or "|")
    charset = fields[17].strip() if len(fields) > 17 else ""
    return _CHARSETS.get(charset, "latin-1")


def send(host: str, port: int, message: str, timeout: float = 10.0) -> Hl7Result:
    """Send `message` (text; segment ends normalised to CR) and parse the ACK."""
    text = normalise(message)
    if not text.startswith("MSH"):
        return Hl7Result(False, None, "not an HL7 message: it must start with an MSH segment")
    try:
        raw = text.encode(_codec(text))
    except UnicodeEncodeError as exc:
        return Hl7Result(False, None, f"cannot encode the message in its MSH-18 charset: {exc}")
    try:
        reply = send_message(host, port, raw, timeout)
    except MllpError as exc:
        return Hl7Result(False, None, str(exc))
    return parse_ack(reply)


def parse_ack(raw: bytes) -> Hl7Result:
    """MSA and ERR of an ACK (decoded per its MSH-18)."""
    shown = "\n".join(s for s in re.split(r"\r\n|\r|\n", raw.decode("latin-1")) if s)
    try:
        summary = read_ack(raw)
    except (Hl7Error, ValueError, IndexError) as exc:
        return Hl7Result(False, None, f"the reply is not a readable ACK: {exc}", ack=shown)
    if not summary.ack_code:
        return Hl7Result(False, None, "the reply has no MSA segment", ack=shown)
    errors = []
    parts = [f"MSA-1 {summary.ack_code}"]
    if summary.text:
        parts.append(summary.text)
    if summary.error_code is not None or summary.error_location:
        errors.append(
            {
                "code": "" if summary.error_code is None else str(summary.error_code),
                "location": summary.error_location,
            }
        )
        parts.append(f"ERR {summary.error_code} at {summary.error_location or '?'}")
    ok = summary.ack_code in ("AA", "CA")
    return Hl7Result(ok, summary.ack_code, "; ".join(parts), summary.control_id, errors, shown)
