"""The PACS's HL7 v2 receiver: patient registration, update and merge, and orders (IHE RAD SWF).

Transactions (IHE RAD TF-2): RAD-1 Patient Registration (ADT^A01, ADT^A04), RAD-12 Patient
Update (ADT^A08 update, ADT^A40 merge), RAD-4/RAD-13 Procedure Scheduled/Updated (ORM^O01 with
ORC-1 NW, XO, CA, SC).

What an administrator sees: one node-log line per message with its ACK
(``HL7 ADT^A08 ctrl=MSG00042 from RIS/HOSPITAL: ACK AA ...``), and the registered patients,
orders and message log through the admin API. They live in this service's own SQLite file
(``data_dir/hl7.sqlite``, WAL, synchronous=FULL): a message is acknowledged only after its effect
and its log row are committed, so nothing the PACS said AA to is lost by a crash. A08 and A40
also change the archive's index, so stored studies show the RIS's demographics.

Messages are processed one at a time (HL7 order matters: an A08 must not overtake the A01 it
updates), whichever connection they arrive on.

The work is split in three modules: this one is the MLLP listener, dispatch to the handlers,
the ACK and the node log; hl7_handlers reads segments and applies each message kind; hl7_store
is the SQLite registry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simlab.common.config import Hl7Settings, PacsConfig
from simlab.common.hl7_messages import (
    AckCode,
    AckIdentity,
    ErrorCode,
    Hl7Error,
    InboundMessage,
    MshHeader,
    application_error,
    build_ack,
    encode,
    new_control_id,
    parse_inbound,
    read_raw_header,
    validate_header,
)
from simlab.common.mllp import MllpLimits, MllpServer
from simlab.nodes.pacs.hl7_handlers import (
    HandlerContext,
    PatientIndex,
    handle_adt_a01,
    handle_adt_a08,
    handle_adt_a40,
    handle_orm_o01,
)
from simlab.nodes.pacs.hl7_store import Hl7Store, MessageRecord, _now, is_lock_error

DB_FILE = "hl7.sqlite"


Handler = Callable[[InboundMessage, HandlerContext], str]

HANDLERS: dict[tuple[str, str], Handler] = {
    ("ADT", "A01"): handle_adt_a01,
    ("ADT", "A04"): handle_adt_a01,
    ("ADT", "A08"): handle_adt_a08,
    ("ADT", "A40"): handle_adt_a40,
    ("ORM", "O01"): handle_orm_o01,
}
SUPPORTED_EVENTS: dict[str, frozenset[str]] = {
    kind: frozenset(event for k, event in HANDLERS if k == kind) for kind, _ in HANDLERS
}
"""Message types to trigger events the PACS accepts; anything else is AR 200/201."""


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    ack_code: AckCode
    text: str
    error: Hl7Error | None = None


class Hl7Service:
    """The PACS's MLLP listener and HL7 message processing (see the module docstring).

    Args:
        get_config: The node's config in force now (read at each message: identity and limits
            apply live; a host/port change restarts the listener via apply_config).
        index: The archive's index, updated by A08 and A40.
        data_dir: The node's data directory, home of hl7.sqlite.
        logger: The node logger.
    """

    def __init__(
        self,
        get_config: Callable[[], PacsConfig],
        index: PatientIndex,
        data_dir: Path,
        logger: logging.Logger,
    ) -> None:
        self._get_config = get_config
        self._index = index
        self._logger = logger
        self._store = Hl7Store(data_dir / DB_FILE)
        self._server: MllpServer | None = None
        self._process_lock = threading.Lock()
        self._lifecycle_lock = threading.Lock()

    @property
    def listening(self) -> bool:
        """True while the MLLP listener is up."""
        return self._server is not None and self._server.running

    def start(self) -> None:
        """Open hl7.sqlite and start listening. Raises OSError when the port is taken."""
        with self._lifecycle_lock:
            if not self._store.is_open:
                self._store.open()
            self._start_listener(self._get_config().hl7)

    def stop(self) -> None:
        """Stop listening (messages in flight still get their ACK), then close the database."""
        with self._lifecycle_lock:
            self._stop_listener()
            with self._process_lock:
                self._store.close()

    def apply_config(self, old: PacsConfig, new: PacsConfig) -> bool:
        """Restart the listener when host or port changed; True when it was restarted.

        Identity (MSH-5/6) and limits need no restart: they are read at each message. When the
        new address cannot be bound the error is logged and HL7 stays down, as a real system's
        would, until the address is fixed.
        """
        if (old.hl7.host, old.hl7.port) == (new.hl7.host, new.hl7.port):
            return False
        with self._lifecycle_lock:
            self._logger.info(
                "HL7 listener moving from %s:%d to %s:%d",
                old.hl7.host,
                old.hl7.port,
                new.hl7.host,
                new.hl7.port,
            )
            self._stop_listener()
            try:
                self._start_listener(new.hl7)
            except OSError as exc:
                self._logger.error(
                    "HL7 listener cannot listen on %s:%d: %s; HL7 is down until this is fixed",
                    new.hl7.host,
                    new.hl7.port,
                    exc,
                )
        return True

    def message_log(self, limit: int = 100) -> list[dict]:
        """Newest first: time, control_id, type, ack_code, error_code, text, peer, and more."""
        return self._store.messages(limit)

    def orders(self, limit: int = 100) -> list[dict]:
        """Orders received by ORM^O01, most recently changed first."""
        return self._store.orders(limit)

    def registered_patients(self, limit: int = 100) -> list[dict]:
        """Patients registered by ADT (and ORM), most recently changed first."""
        return self._store.patients(limit)

    # -- listener ---------------------------------------------------------------------------

    def _start_listener(self, settings: Hl7Settings) -> None:
        server = MllpServer(
            settings.host,
            settings.port,
            self.handle_message,
            self._logger,
            limits=self._limits,
            name="HL7",
        )
        server.start()
        self._server = server

    def _stop_listener(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _limits(self) -> MllpLimits:
        settings = self._get_config().hl7
        return MllpLimits(settings.max_message_bytes, settings.idle_timeout)

    # -- message processing -----------------------------------------------------------------

    def handle_message(self, raw: bytes, peer: str) -> bytes:
        """Process one inbound message and return its ACK, already encoded per MSH-18.

        Never raises for anything a sender can put in a message: every failure becomes an AE or
        AR. The ACK is built only after the message and its effect are committed.
        """
        with self._process_lock:
            settings = self._get_config().hl7
            identity = AckIdentity(settings.application, settings.facility)
            ack_control_id = new_control_id()
            try:
                header, outcome = self._evaluate(raw, peer, ack_control_id)
            except Exception as exc:  # a bug here must cost one AE, never the connection
                self._logger.exception("HL7 message from %s: unexpected error", peer)
                header, outcome = (
                    None,
                    _Outcome(
                        AckCode.ERROR,
                        f"internal error ({type(exc).__name__})",
                        application_error(
                            ErrorCode.APPLICATION_INTERNAL_ERROR, f"internal error: {exc}"
                        ),
                    ),
                )
            ack = build_ack(
                header,
                outcome.ack_code,
                identity,
                text=outcome.text,
                error=outcome.error,
                control_id=ack_control_id,
            )
            self._log_outcome(header, outcome)
            return encode(ack, header.charset if header else "")

    def _evaluate(
        self, raw: bytes, peer: str, ack_control_id: str
    ) -> tuple[MshHeader | None, _Outcome]:
        record = _RecordDraft(peer, ack_control_id, raw.decode("latin-1"))
        try:
            header = read_raw_header(raw)
        except Hl7Error as exc:
            return None, self._record_failure(record, None, exc)
        try:
            settings = self._get_config().hl7
            validate_header(
                header,
                application=settings.application,
                facility=settings.facility,
                supported=SUPPORTED_EVENTS,
            )
            msg = parse_inbound(raw, header)
        except Hl7Error as exc:
            return header, self._record_failure(record, header, exc)
        record.message = msg.text
        try:
            return msg.header, self._process(msg, record)
        except Hl7Error as exc:
            return msg.header, self._record_failure(record, msg.header, exc)
        except Exception as exc:
            return msg.header, self._record_failure(record, msg.header, self._internal(exc, msg))

    def _process(self, msg: InboundMessage, record: _RecordDraft) -> _Outcome:
        """Apply the message and log it in one transaction; the commit happens before the ACK."""
        handler = HANDLERS[(msg.header.message_type, msg.header.trigger_event)]
        ctx = HandlerContext(self._store, self._index, self._logger)
        with self._store.transaction():
            duplicate = self._store.accepted_duplicate(msg.header, msg.text)
            if duplicate is not None:
                text = (
                    f"duplicate of message #{duplicate['id']} accepted at {duplicate['time']};"
                    " not applied again"
                )
            else:
                text = handler(msg, ctx)
            if msg.warnings:
                text += "; warning: " + "; ".join(msg.warnings)
            self._store.log_message(record.finish(msg.header, AckCode.ACCEPT, None, text))
        return _Outcome(AckCode.ACCEPT, text)

    def _internal(self, exc: Exception, msg: InboundMessage) -> Hl7Error:
        """AE 206 when a database lock could not be had in time, AE 207 for anything else."""
        if is_lock_error(exc):
            return application_error(
                ErrorCode.APPLICATION_RECORD_LOCKED,
                f"database busy, message not applied; send it again ({exc})",
            )
        self._logger.exception(
            "HL7 %s ctrl=%s: internal error", msg.header.type_label, msg.header.control_id
        )
        return application_error(
            ErrorCode.APPLICATION_INTERNAL_ERROR,
            f"internal error, message not applied ({type(exc).__name__}: {exc})",
        )

    def _record_failure(
        self, record: _RecordDraft, header: MshHeader | None, error: Hl7Error
    ) -> _Outcome:
        """Log a refused message (own transaction); an AE/AR is sent even if that fails."""
        if error.code is ErrorCode.APPLICATION_RECORD_LOCKED:
            # The same lock would make the log row wait and fail too; the node log keeps it.
            self._logger.error(
                "HL7 ctrl=%s: not recorded in %s, the database is locked",
                header.control_id if header else "?",
                DB_FILE,
            )
            return _Outcome(error.ack_code, error.text, error)
        try:
            with self._store.transaction():
                self._store.log_message(record.finish(header, error.ack_code, error, error.text))
        except Exception as exc:
            self._logger.error(
                "HL7 ctrl=%s: could not record the message in %s: %s",
                header.control_id if header else "?",
                DB_FILE,
                exc,
            )
        return _Outcome(error.ack_code, error.text, error)

    def _log_outcome(self, header: MshHeader | None, outcome: _Outcome) -> None:
        kind = header.type_label if header else "?"
        control = header.control_id if header and header.control_id else "?"
        sender = header.sender if header else "?"
        prefix = f"HL7 {kind} ctrl={control} from {sender}: ACK {outcome.ack_code}"
        if outcome.error is None:
            self._logger.info("%s (%s)", prefix, outcome.text)
        else:
            where = outcome.error.location
            detail = f" [{where.label()}]" if where and where.label() not in outcome.text else ""
            self._logger.warning(
                "%s %d %s%s", prefix, int(outcome.error.code), outcome.text, detail
            )


class _RecordDraft:
    """The parts of a message-log row known before the outcome."""

    def __init__(self, peer: str, ack_control_id: str, message: str) -> None:
        self.time = _now()
        self.peer = peer
        self.ack_control_id = ack_control_id
        self.message = message

    def finish(
        self, header: MshHeader | None, ack_code: AckCode, error: Hl7Error | None, text: str
    ) -> MessageRecord:
        return MessageRecord(
            time=self.time,
            peer=self.peer,
            header=header,
            charset=(header.charset or "ASCII (no MSH-18)") if header else "",
            ack_code=ack_code,
            error=error,
            text=text,
            ack_control_id=self.ack_control_id,
            message=self.message,
        )
