"""Opening an association as SCU and saying why it failed, in the codes an administrator reads.

Shared by the lab side's SCU helpers (simlab/client/dicom_scu.py) and by every node's "Verify"
button (POST /dicom/echo), so a C-ECHO from the admin workstation and one from a node's console
describe the same failure with the same words: the A-ASSOCIATE-RJ result/source/reason
(PS3.8 9.3.4), presentation context results (PS3.8 9.3.3.2), "connection refused", "timeout".
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from simlab.common.dicom_status import (
    CONTEXT_RESULT_TEXT,
    describe,
    hex_status,
    reject_reason_text,
)

_PROBE_TIMEOUT = 3.0


def reject_text(result: int, source: int, reason: int) -> str:
    """'rejected 1/1/7 (called AE title not recognised)' — result/source/reason, PS3.8 9.3.4."""
    why = reject_reason_text(source, reason)
    if result == 2:
        why = f"transient: {why}"
    return f"rejected {result}/{source}/{reason} ({why})"


def status_text(status: int) -> str:
    """'0xA801 Refused: Move destination unknown'."""
    return f"{hex_status(status)} {describe(status)}"


@dataclass(frozen=True)
class Timeouts:
    """Every timer an SCU needs; a lab tool never waits forever on a hung peer."""

    connect: float = 5.0
    """TCP connect."""
    acse: float = 10.0
    """ARTIM: waiting for A-ASSOCIATE-AC/RJ and A-RELEASE-RP (PS3.8 9.1.5)."""
    dimse: float = 10.0
    """Waiting for each DIMSE response."""
    network: float = 30.0
    """TCP silence on an open association."""

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        """All timers from one number (the DIMSE and network timers get more for big moves)."""
        return cls(connect=min(seconds, 5.0), acse=seconds, dimse=seconds, network=seconds * 3)


def new_ae(calling_ae: str, timeouts: Timeouts) -> AE:
    """A requestor AE with every timer set."""
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = timeouts.connect
    ae.acse_timeout = timeouts.acse
    ae.dimse_timeout = timeouts.dimse
    ae.network_timeout = timeouts.network
    return ae


@dataclass
class Attempt:
    """An association attempt: the established association, or the reason it is not."""

    assoc: Any
    error: str = ""
    reject: tuple[int, int, int] | None = None
    """(result, source, reason) of an A-ASSOCIATE-RJ."""

    @property
    def ok(self) -> bool:
        return not self.error


def associate(
    ae: AE,
    host: str,
    port: int,
    called_ae: str,
    evt_handlers: list[Any] | None = None,
    ext_neg: list[Any] | None = None,
) -> Attempt:
    """Request an association; never raises for a protocol or network failure."""
    opened: list[bool] = []
    handlers = [(evt.EVT_CONN_OPEN, lambda _e: opened.append(True)), *(evt_handlers or [])]
    started = time.monotonic()
    try:
        assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=handlers, ext_neg=ext_neg)
    except (OSError, ValueError) as exc:
        return Attempt(None, f"cannot associate: {exc}")
    if assoc.is_established:
        return Attempt(assoc)
    elapsed = time.monotonic() - started
    primitive = getattr(assoc.acceptor, "primitive", None)
    if assoc.is_rejected and primitive is not None:
        codes = (int(primitive.result), int(primitive.result_source), int(primitive.diagnostic))
        return Attempt(None, reject_text(*codes), codes)
    rejected = list(getattr(assoc, "rejected_contexts", []) or [])
    if rejected:
        parts = sorted(
            {
                f"{cx.abstract_syntax.name}: {CONTEXT_RESULT_TEXT.get(cx.result, cx.result)}"
                for cx in rejected
            }
        )
        return Attempt(None, "no presentation context accepted (" + "; ".join(parts) + ")")
    if not opened:
        return Attempt(None, _connect_failure(host, port, ae.connection_timeout or 5.0))
    if elapsed >= (ae.acse_timeout or 0) * 0.9:
        return Attempt(None, f"timeout (no A-ASSOCIATE response within {ae.acse_timeout:g} s)")
    return Attempt(None, "aborted (A-ABORT or connection closed by the peer)")


def _connect_failure(host: str, port: int, timeout: float) -> str:
    """pynetdicom logs but does not return why TCP failed: ask the socket once more."""
    try:
        with socket.create_connection((host, port), timeout=min(timeout, _PROBE_TIMEOUT)):
            return f"cannot connect to {host}:{port} (it accepts connections now)"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"timeout (no TCP connection to {host}:{port} within {timeout:g} s)"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


@dataclass
class EchoOutcome:
    """The answer of a Verify button: ok, DIMSE status (None when no association), text."""

    ok: bool
    status: int | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "text": self.text}


def verify(
    calling_ae: str, host: str, port: int, called_ae: str, timeouts: Timeouts | None = None
) -> EchoOutcome:
    """C-ECHO (Verification SOP Class, PS3.4 A.4) from `calling_ae` to a peer."""
    ae = new_ae(calling_ae, timeouts or Timeouts())
    ae.add_requested_context(Verification)
    attempt = associate(ae, host, port, called_ae)
    if not attempt.ok:
        return EchoOutcome(False, None, attempt.error)
    assoc = attempt.assoc
    try:
        rsp = assoc.send_c_echo()
        status = getattr(rsp, "Status", None)
        if status is None:
            return EchoOutcome(False, None, "timeout (no C-ECHO response) or association aborted")
        return EchoOutcome(int(status) == 0, int(status), status_text(int(status)))
    finally:
        if assoc.is_established:
            assoc.release()
