"""The HL7 service's SQLite registry: message log, registered patients and orders.

It exists apart from the listener and the handlers because it is the one part that must be
durable: ``data_dir/hl7.sqlite`` is opened in WAL mode with synchronous=FULL, and every write
goes through `Hl7Store.transaction()`, so an effect and its message-log row commit together
before the service sends the ACK. The handlers (hl7_handlers) write through it inside that
transaction, and the admin API reads patients, orders and the message log from it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simlab.common.hl7_messages import AckCode, Hl7Error, MshHeader
from simlab.common.sqlite_db import SqliteDatabase

if TYPE_CHECKING:
    from simlab.nodes.pacs.hl7_handlers import OrderData, OrderKey

BUSY_TIMEOUT_S = 2.0
"""How long a write waits for a lock held by someone else before the message gets AE 206."""
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    peer TEXT NOT NULL,
    control_id TEXT NOT NULL,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    charset TEXT NOT NULL,
    ack_code TEXT NOT NULL,
    error_code INTEGER,
    error_location TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    ack_control_id TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_control_id ON messages (control_id);
CREATE TABLE IF NOT EXISTS patients (
    patient_id TEXT NOT NULL,
    issuer TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    birth_date TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active',
    merged_into TEXT,
    source TEXT NOT NULL,
    control_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (patient_id, issuer)
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    accession TEXT NOT NULL,
    requested_procedure_id TEXT NOT NULL DEFAULT '',
    scheduled_step_id TEXT NOT NULL DEFAULT '',
    placer_order TEXT NOT NULL DEFAULT '',
    filler_order TEXT NOT NULL DEFAULT '',
    patient_id TEXT NOT NULL,
    issuer TEXT NOT NULL DEFAULT '',
    patient_name TEXT NOT NULL DEFAULT '',
    procedure_code TEXT NOT NULL DEFAULT '',
    procedure_text TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    scheduled_at TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    order_control TEXT NOT NULL,
    control_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (accession, requested_procedure_id, scheduled_step_id)
);
"""

_ORDER_FIELDS = (
    "requested_procedure_id",
    "scheduled_step_id",
    "placer_order",
    "filler_order",
    "procedure_code",
    "procedure_text",
    "modality",
    "scheduled_at",
)


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def is_lock_error(exc: BaseException) -> bool:
    """True when SQLite gave up waiting for a lock (SQLITE_BUSY / SQLITE_LOCKED)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in str(exc)


@dataclass(frozen=True)
class Patient:
    """A patient as HL7 describes it, already in DICOM form (PN name, DA birth date, CS sex).

    None means "not sent" (leave as is); '' means "sent empty or as HL7 null" (clear).
    """

    patient_id: str
    issuer: str
    name: str | None
    birth_date: str | None
    sex: str | None


@dataclass(frozen=True)
class MessageRecord:
    """One row of the message log."""

    time: str
    peer: str
    header: MshHeader | None
    charset: str
    ack_code: AckCode
    error: Hl7Error | None
    text: str
    ack_control_id: str
    message: str


class Hl7Store(SqliteDatabase):
    """The HL7 service's SQLite file: message log, registered patients, orders.

    One connection guarded by a lock (the service writes from MLLP threads, the admin API reads
    from its own). Writes happen inside `transaction()`.
    """

    def __init__(self, path: Path) -> None:
        # synchronous=FULL: an ACK means the message's effect is on disk.
        super().__init__(
            path,
            schema=_SCHEMA,
            synchronous="FULL",
            busy_timeout=BUSY_TIMEOUT_S,
            what="the HL7 database",
        )

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            if self._conn is None:
                return []
            return [dict(row) for row in self._conn.execute(sql, params)]

    # -- message log ------------------------------------------------------------------------

    def log_message(self, record: MessageRecord) -> None:
        """Insert one message-log row (call inside a transaction)."""
        header = record.header
        error = record.error
        self.conn.execute(
            "INSERT INTO messages (time, peer, control_id, type, sender, charset, ack_code,"
            " error_code, error_location, text, ack_control_id, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.time,
                record.peer,
                header.control_id if header else "",
                header.type_label if header else "?",
                header.sender if header else "?",
                record.charset,
                str(record.ack_code),
                int(error.code) if error else None,
                error.location.label() if error and error.location else "",
                record.text,
                record.ack_control_id,
                record.message,
            ),
        )

    def accepted_duplicate(self, header: MshHeader, message: str) -> dict[str, Any] | None:
        """An earlier AA for the very same message (same control ID, sender and text)."""
        rows = self._rows(
            "SELECT id, time FROM messages WHERE control_id = ? AND sender = ? AND message = ?"
            " AND ack_code = 'AA' ORDER BY id LIMIT 1",
            (header.control_id, header.sender, message),
        )
        return rows[0] if rows else None

    def messages(self, limit: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM messages ORDER BY id DESC LIMIT ?", (limit,))

    # -- patients ---------------------------------------------------------------------------

    def patient(self, patient_id: str, issuer: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM patients WHERE patient_id = ? AND issuer = ?", (patient_id, issuer)
        )
        return rows[0] if rows else None

    def save_patient(self, patient: Patient, source: str, control_id: str) -> bool:
        """Insert or update a patient (fields that were not sent are kept); True when new."""
        existing = self.patient(patient.patient_id, patient.issuer)
        now = _now()
        if existing is None:
            self.conn.execute(
                "INSERT INTO patients (patient_id, issuer, name, birth_date, sex, status,"
                " merged_into, source, control_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'active', NULL, ?, ?, ?, ?)",
                (
                    patient.patient_id,
                    patient.issuer,
                    patient.name or "",
                    patient.birth_date or "",
                    patient.sex or "",
                    source,
                    control_id,
                    now,
                    now,
                ),
            )
            return True
        self.conn.execute(
            "UPDATE patients SET name = ?, birth_date = ?, sex = ?, status = 'active',"
            " merged_into = NULL, source = ?, control_id = ?, updated_at = ?"
            " WHERE patient_id = ? AND issuer = ?",
            (
                existing["name"] if patient.name is None else patient.name,
                existing["birth_date"] if patient.birth_date is None else patient.birth_date,
                existing["sex"] if patient.sex is None else patient.sex,
                source,
                control_id,
                now,
                patient.patient_id,
                patient.issuer,
            ),
        )
        return False

    def mark_merged(self, prior_id: str, issuer: str, target_id: str, control_id: str) -> int:
        """Mark the prior patient merged into the target and move its orders; orders moved."""
        now = _now()
        self.conn.execute(
            "UPDATE patients SET status = 'merged', merged_into = ?, source = 'ADT^A40',"
            " control_id = ?, updated_at = ? WHERE patient_id = ? AND issuer = ?",
            (target_id, control_id, now, prior_id, issuer),
        )
        cursor = self.conn.execute(
            "UPDATE orders SET patient_id = ?, updated_at = ? WHERE patient_id = ? AND issuer = ?",
            (target_id, now, prior_id, issuer),
        )
        return cursor.rowcount

    def patients(self, limit: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM patients ORDER BY updated_at DESC LIMIT ?", (limit,))

    # -- orders -----------------------------------------------------------------------------

    def find_orders(self, key: OrderKey) -> list[dict[str, Any]]:
        """Orders matching a key: accession (narrowed by the IDs given), else placer/filler."""
        if key.accession:
            return self._rows(
                "SELECT * FROM orders WHERE accession = ?"
                " AND (? = '' OR requested_procedure_id = ?) AND (? = '' OR scheduled_step_id = ?)"
                " ORDER BY id",
                (
                    key.accession,
                    key.requested_procedure_id,
                    key.requested_procedure_id,
                    key.scheduled_step_id,
                    key.scheduled_step_id,
                ),
            )
        return self._rows(
            "SELECT * FROM orders WHERE (? != '' AND placer_order = ?)"
            " OR (? != '' AND filler_order = ?) ORDER BY id",
            (key.placer_order, key.placer_order, key.filler_order, key.filler_order),
        )

    def insert_order(self, order: OrderData, patient: Patient, control_id: str) -> None:
        now = _now()
        self.conn.execute(
            f"INSERT INTO orders (accession, {', '.join(_ORDER_FIELDS)}, patient_id, issuer,"  # noqa: S608
            " patient_name, status, order_control, control_id, created_at, updated_at)"
            f" VALUES (?, {'?, ' * len(_ORDER_FIELDS)}?, ?, ?, 'SCHEDULED', 'NW', ?, ?, ?)",
            (
                order.key.accession,
                *(getattr(order, name) for name in _ORDER_FIELDS),
                patient.patient_id,
                patient.issuer,
                patient.name or "",
                control_id,
                now,
                now,
            ),
        )

    def update_order(
        self, row_id: int, changes: dict[str, str], order_control: str, control_id: str
    ) -> None:
        """Apply changes (column -> value; column names are ours, never the sender's)."""
        columns = [
            name
            for name in changes
            if name in (*_ORDER_FIELDS, "status", "patient_id", "issuer", "patient_name")
        ]
        assignments = "".join(f"{name} = ?, " for name in columns)
        self.conn.execute(
            f"UPDATE orders SET {assignments}order_control = ?, control_id = ?, updated_at = ?"  # noqa: S608
            " WHERE id = ?",
            (*(changes[name] for name in columns), order_control, control_id, _now(), row_id),
        )

    def orders(self, limit: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM orders ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,)
        )
