"""The RIS's inbound HL7 v2 listener: patients and orders from a HIS / order placer.

Accepted: ADT^A01/A04 (register), ADT^A08 (update), ADT^A40 (merge), ORM^O01 with ORC-1 NW
(new order; an empty OBR-18 gets a RIS accession number) or CA (cancel). The header checks and
the ACK are `simlab.common.hl7_messages`'s, the listener `simlab.common.mllp`'s, exactly as the
PACS uses them; a message is acknowledged AA only after its effect, its outbound HL7 (when
``forward_inbound``) and its log row are committed. One node-log line per message with its ACK.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from simlab.common.hl7_messages import (
    AckCode,
    AckIdentity,
    ErrorCode,
    ErrorLocation,
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
from simlab.common.ris_config import RisConfig
from simlab.nodes.ris.scheduling import Scheduler, SchedulingError
from simlab.nodes.ris.store import RisStore

SUPPORTED_EVENTS: dict[str, frozenset[str]] = {
    "ADT": frozenset({"A01", "A04", "A08", "A40"}),
    "ORM": frozenset({"O01"}),
}


def read_patient(msg: InboundMessage, sequence: int = 1) -> dict[str, str]:
    """PID-3 (ID, PID-3.4 issuer), PID-5 (as DICOM PN), PID-7 (date part), PID-8."""
    pids = msg.segments("PID")
    if len(pids) < sequence:
        raise application_error(
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
            "required segment PID is missing",
            ErrorLocation("PID"),
        )
    pid = pids[sequence - 1]
    patient_id = msg.value(pid, 3, 1)
    if not patient_id:
        raise application_error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "PID-3 patient ID is empty",
            ErrorLocation("PID", sequence, 3),
        )
    name_parts = msg.components(pid, 5)[:5]
    while name_parts and not name_parts[-1]:
        name_parts.pop()
    return {
        "patient_id": patient_id,
        "issuer": msg.value(pid, 3, 4),
        "name": "^".join(name_parts),
        "birth_date": msg.value(pid, 7)[:8],
        "sex": msg.value(pid, 8).upper()[:1],
    }


class RisHl7Service:
    """The MLLP listener and the inbound handlers (see the module docstring)."""

    def __init__(
        self,
        get_config: Callable[[], RisConfig],
        store: RisStore,
        scheduler: Scheduler,
        logger: logging.Logger,
    ) -> None:
        self._get_config = get_config
        self._store = store
        self._scheduler = scheduler
        self._logger = logger
        self._server: MllpServer | None = None
        self._process_lock = threading.Lock()

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.running

    def start(self) -> None:
        settings = self._get_config().hl7
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

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def apply_config(self, old: RisConfig, new: RisConfig) -> bool:
        if (old.hl7.host, old.hl7.port) == (new.hl7.host, new.hl7.port):
            return False
        self.stop()
        try:
            self.start()
        except OSError as exc:
            self._logger.error(
                "HL7 listener cannot listen on %s:%d: %s", new.hl7.host, new.hl7.port, exc
            )
        return True

    def _limits(self) -> MllpLimits:
        settings = self._get_config().hl7
        return MllpLimits(settings.max_message_bytes, settings.idle_timeout)

    # -- messages ----------------------------------------------------------------------------

    def handle_message(self, raw: bytes, peer: str) -> bytes:
        """Process one message and return its ACK bytes; never raises for bad input."""
        with self._process_lock:
            settings = self._get_config().hl7
            identity = AckIdentity(settings.application, settings.facility)
            header: MshHeader | None = None
            text = raw.decode("latin-1")
            try:
                header = read_raw_header(raw)
                validate_header(
                    header,
                    application=settings.application,
                    facility=settings.facility,
                    supported=SUPPORTED_EVENTS,
                )
                msg = parse_inbound(raw, header)
                text = msg.text
                ack_code, result, error = AckCode.ACCEPT, self._apply(msg), None
            except Hl7Error as exc:
                ack_code, result, error = exc.ack_code, exc.text, exc
            except Exception as exc:
                self._logger.exception("HL7 message from %s: unexpected error", peer)
                error = application_error(
                    ErrorCode.APPLICATION_INTERNAL_ERROR, f"internal error: {type(exc).__name__}"
                )
                ack_code, result = error.ack_code, error.text
            ack = build_ack(
                header, ack_code, identity, text=result, error=error, control_id=new_control_id()
            )
            self._record(peer, header, ack_code, error, result, text)
            return encode(ack, header.charset if header else "")

    def _record(
        self,
        peer: str,
        header: MshHeader | None,
        ack_code: AckCode,
        error: Hl7Error | None,
        text: str,
        message: str,
    ) -> None:
        kind = header.type_label if header else "?"
        control = (header.control_id if header else "") or "?"
        sender = header.sender if header else "?"
        line = f"HL7 in {kind} ctrl={control} from {sender} ({peer}): ACK {ack_code}"
        if error is None:
            self._logger.info("%s (%s)", line, text)
        else:
            where = f" [{error.location.label()}]" if error.location else ""
            self._logger.warning("%s %d %s%s", line, int(error.code), text, where)
        try:
            self._store.log_inbound(
                {
                    "peer": peer,
                    "control_id": control,
                    "type": kind,
                    "sender": sender,
                    "ack_code": str(ack_code),
                    "error_code": int(error.code) if error else None,
                    "text": text,
                    "message": message,
                }
            )
        except Exception as exc:
            self._logger.error("HL7 ctrl=%s: could not record the message: %s", control, exc)

    def _apply(self, msg: InboundMessage) -> str:
        forward = self._get_config().forward_inbound
        duplicate = self._store.accepted_duplicate(
            msg.header.control_id, msg.header.sender, msg.text
        )
        if duplicate is not None:
            return (
                f"duplicate of message #{duplicate['id']} accepted at {duplicate['time']};"
                " not applied again"
            )
        source = f"HL7 {msg.header.type_label} ctrl={msg.header.control_id}"
        kind, event = msg.header.message_type, msg.header.trigger_event
        try:
            with self._store.transaction():
                if kind == "ADT" and event in ("A01", "A04"):
                    patient, created = self._scheduler.register_patient(
                        read_patient(msg), source, forward=forward
                    )
                    verb = "registered" if created else "already registered, refreshed"
                    return f"patient {patient['patient_id']} {verb}"
                if kind == "ADT" and event == "A08":
                    return self._update(msg, source, forward)
                if kind == "ADT" and event == "A40":
                    return self._merge(msg, source, forward)
                return self._order(msg, source, forward)
        except SchedulingError as exc:
            code = {
                404: ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                409: ErrorCode.DUPLICATE_KEY_IDENTIFIER,
            }.get(exc.status, ErrorCode.REQUIRED_FIELD_MISSING)
            raise application_error(code, str(exc)) from None

    def _update(self, msg: InboundMessage, source: str, forward: bool) -> str:
        patient = read_patient(msg)
        if self._store.patient(patient["patient_id"]) is None:
            raise application_error(
                ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                f"PID-3 patient '{patient['patient_id']}' is not registered",
                ErrorLocation("PID", 1, 3),
            )
        self._scheduler.update_patient(patient["patient_id"], patient, source, forward=forward)
        return f"patient {patient['patient_id']} updated"

    def _merge(self, msg: InboundMessage, source: str, forward: bool) -> str:
        target = read_patient(msg)
        mrg = msg.segment("MRG")
        prior_id = msg.value(mrg, 1, 1)
        if not prior_id:
            raise application_error(
                ErrorCode.REQUIRED_FIELD_MISSING,
                "MRG-1 prior patient ID is empty",
                ErrorLocation("MRG", 1, 1),
            )
        if self._store.patient(target["patient_id"]) is None:
            self._scheduler.register_patient(target, source, forward=forward)
        result = self._scheduler.merge_patient(
            prior_id, target["patient_id"], source, forward=forward
        )
        moved = result["orders_moved"]
        return f"patient {prior_id} merged into {target['patient_id']} ({moved} order(s))"

    def _order(self, msg: InboundMessage, source: str, forward: bool) -> str:
        patient = read_patient(msg)
        orc, obr = msg.segment("ORC"), msg.segment("OBR")
        if orc is None:
            raise application_error(
                ErrorCode.SEGMENT_SEQUENCE_ERROR,
                "required segment ORC is missing",
                ErrorLocation("ORC"),
            )
        control = msg.value(orc, 1).upper()
        accession = msg.value(obr, 18)
        if control == "CA":
            if not accession:
                raise application_error(
                    ErrorCode.REQUIRED_FIELD_MISSING,
                    "OBR-18 accession number is empty",
                    ErrorLocation("OBR", 1, 18),
                )
            self._scheduler.cancel_order(accession, source, forward=forward)
            return f"order {accession} cancelled"
        if control != "NW":
            raise application_error(
                ErrorCode.TABLE_VALUE_NOT_FOUND,
                f"ORC-1 order control '{control}' is not supported (NW, CA)",
                ErrorLocation("ORC", 1, 1),
            )
        if obr is None:
            raise application_error(
                ErrorCode.SEGMENT_SEQUENCE_ERROR,
                "required segment OBR is missing",
                ErrorLocation("OBR"),
            )
        if self._store.patient(patient["patient_id"]) is None:
            self._scheduler.register_patient(patient, source, forward=forward)
        start = msg.value(obr, 27, 4) or msg.value(orc, 7, 4) or msg.value(msg.segment("TQ1"), 7)
        if len(start) < 8:
            raise application_error(
                ErrorCode.REQUIRED_FIELD_MISSING,
                "OBR-27.4 (or ORC-7.4) scheduled start date/time is empty",
                ErrorLocation("OBR", 1, 27),
            )
        modality = msg.value(obr, 24)
        if not modality:
            raise application_error(
                ErrorCode.REQUIRED_FIELD_MISSING,
                "OBR-24 modality (diagnostic service section) is empty",
                ErrorLocation("OBR", 1, 24),
            )
        referring = msg.components(obr, 16)[1:4] or msg.components(msg.segment("PV1"), 8)[1:4]
        data: dict[str, Any] = {
            "patient_id": patient["patient_id"],
            "accession": accession,
            "placer_order": msg.value(orc, 2) or msg.value(obr, 2),
            "requested_procedure_id": msg.value(obr, 19),
            "sps_id": msg.value(obr, 20),
            "station_ae": msg.value(obr, 21),
            "modality": modality,
            "start_date": start[:8],
            "start_time": start[8:14],
            "procedure_code": msg.value(obr, 4, 1),
            "procedure_meaning": msg.value(obr, 4, 2),
            "procedure_scheme": msg.value(obr, 4, 3),
            "referring_physician": "^".join(p for p in referring if p),
        }
        order = self._scheduler.place_order(data, source, forward=forward)
        return f"order {order['accession']} scheduled ({order['modality']})"
