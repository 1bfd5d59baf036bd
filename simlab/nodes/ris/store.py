"""The RIS database: patients, orders (requested procedure + scheduled step), MPPS instances,
the inbound HL7 log, the outbound queue and the counters that number everything.

One SQLite file, ``data_dir/ris.sqlite``, WAL mode, synchronous=FULL, one connection guarded by
a lock (the RIS's load is a department's, not a data centre's). Everything the RIS generates is
numbered from the ``counters`` table inside the same transaction as the row that uses it, so
numbers are never reused, even after a crash, and the same requests give the same numbers.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from simlab.common.sqlite_db import SqliteDatabase

DB_FILE = "ris.sqlite"

ORDER_SCHEDULED = "SCHEDULED"
ORDER_IN_PROGRESS = "IN_PROGRESS"
ORDER_COMPLETED = "COMPLETED"
ORDER_DISCONTINUED = "DISCONTINUED"
ORDER_CANCELLED = "CANCELLED"

Q_PENDING = "pending"
Q_SENT = "sent"
Q_DEAD = "dead"
Q_DELETED = "deleted"
Q_FILTERED = "filtered"
"""Excluded by the destination's route filter: kept for the record, never sent unless retried."""
QUEUE_STATES = (Q_PENDING, Q_SENT, Q_DEAD, Q_DELETED, Q_FILTERED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS patients (
    patient_id TEXT PRIMARY KEY,
    issuer TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    birth_date TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active',
    merged_into TEXT,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS visits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id TEXT NOT NULL,
    patient_class TEXT NOT NULL DEFAULT 'O',
    location TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    accession TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    placer_order TEXT NOT NULL DEFAULT '',
    requested_procedure_id TEXT NOT NULL,
    requested_procedure_description TEXT NOT NULL DEFAULT '',
    sps_id TEXT NOT NULL,
    sps_description TEXT NOT NULL DEFAULT '',
    study_uid TEXT NOT NULL,
    station_ae TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    start_date TEXT NOT NULL DEFAULT '',
    start_time TEXT NOT NULL DEFAULT '',
    performing_physician TEXT NOT NULL DEFAULT '',
    referring_physician TEXT NOT NULL DEFAULT '',
    procedure_code TEXT NOT NULL DEFAULT '',
    procedure_scheme TEXT NOT NULL DEFAULT '',
    procedure_meaning TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_patient ON orders (patient_id);
CREATE TABLE IF NOT EXISTS mpps (
    sop_uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    accession TEXT NOT NULL DEFAULT '',
    calling_ae TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    peer TEXT NOT NULL,
    control_id TEXT NOT NULL,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    ack_code TEXT NOT NULL,
    error_code INTEGER,
    text TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    control_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    ack_code TEXT NOT NULL DEFAULT '',
    ack_error_code INTEGER,
    ack_text TEXT NOT NULL DEFAULT '',
    ack TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS outbound_by_destination ON outbound (destination, state, id);
"""

_ORDER_COLUMNS = (
    "accession",
    "patient_id",
    "placer_order",
    "requested_procedure_id",
    "requested_procedure_description",
    "sps_id",
    "sps_description",
    "study_uid",
    "station_ae",
    "modality",
    "start_date",
    "start_time",
    "performing_physician",
    "referring_physician",
    "procedure_code",
    "procedure_scheme",
    "procedure_meaning",
    "status",
    "source",
)
ORDER_EDITABLE = frozenset(_ORDER_COLUMNS) - {"accession", "patient_id", "source", "study_uid"}


def now_text() -> str:
    """Local time, ISO 8601 to the millisecond (what the admin API and the log show)."""
    return datetime.now().isoformat(timespec="milliseconds")


class RisStore(SqliteDatabase):
    """The RIS's SQLite database (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            path, schema=_SCHEMA, synchronous="FULL", busy_timeout=5.0, what="the RIS database"
        )

    def _rows(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def _row(self, sql: str, params: tuple | list = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    # -- counters ----------------------------------------------------------------------------

    def next_number(self, name: str) -> int:
        """The next value of a named counter (1, 2, ...), never handed out twice."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
            value = (row["value"] if row else 0) + 1
            conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )
            return value

    # -- patients ----------------------------------------------------------------------------

    def patient(self, patient_id: str) -> dict[str, Any] | None:
        return self._row("SELECT * FROM patients WHERE patient_id = ?", (patient_id,))

    def patients(self, limit: int = 100, status: str | None = None) -> list[dict[str, Any]]:
        if status:
            return self._rows(
                "SELECT * FROM patients WHERE status = ? ORDER BY updated_at DESC LIMIT ?",
                (status, limit),
            )
        return self._rows("SELECT * FROM patients ORDER BY updated_at DESC LIMIT ?", (limit,))

    def upsert_patient(self, patient: dict[str, str], source: str) -> bool:
        """Insert or update a patient; True when it was new."""
        stamp = now_text()
        with self.transaction() as conn:
            exists = self.patient(patient["patient_id"]) is not None
            if exists:
                sets = [k for k in ("issuer", "name", "birth_date", "sex") if k in patient]
                conn.execute(
                    f"UPDATE patients SET {', '.join(f'{k} = ?' for k in sets)},"  # noqa: S608
                    " status = 'active', merged_into = NULL, updated_at = ? WHERE patient_id = ?",
                    [patient[k] for k in sets] + [stamp, patient["patient_id"]],
                )
            else:
                conn.execute(
                    "INSERT INTO patients (patient_id, issuer, name, birth_date, sex, source,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        patient["patient_id"],
                        patient.get("issuer", ""),
                        patient.get("name", ""),
                        patient.get("birth_date", ""),
                        patient.get("sex", ""),
                        source,
                        stamp,
                        stamp,
                    ),
                )
                conn.execute(
                    "INSERT INTO visits (patient_id, created_at) VALUES (?, ?)",
                    (patient["patient_id"], stamp),
                )
        return not exists

    def merge_patient(self, prior_id: str, target_id: str) -> int:
        """Mark the prior patient merged and move its orders; returns the orders moved."""
        stamp = now_text()
        with self.transaction() as conn:
            conn.execute(
                "UPDATE patients SET status = 'merged', merged_into = ?, updated_at = ?"
                " WHERE patient_id = ?",
                (target_id, stamp, prior_id),
            )
            cur = conn.execute(
                "UPDATE orders SET patient_id = ?, updated_at = ? WHERE patient_id = ?",
                (target_id, stamp, prior_id),
            )
            return cur.rowcount

    # -- orders ------------------------------------------------------------------------------

    def insert_order(self, order: dict[str, str]) -> None:
        stamp = now_text()
        values = [order.get(c, "") for c in _ORDER_COLUMNS] + [stamp, stamp]
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO orders ({', '.join(_ORDER_COLUMNS)}, created_at, updated_at)"  # noqa: S608
                f" VALUES ({', '.join('?' * len(values))})",
                values,
            )

    def update_order(self, accession: str, changes: dict[str, str]) -> None:
        changes = {k: v for k, v in changes.items() if k in ORDER_EDITABLE}
        if not changes:
            return
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE orders SET {', '.join(f'{k} = ?' for k in changes)},"  # noqa: S608
                " updated_at = ? WHERE accession = ?",
                [*changes.values(), now_text(), accession],
            )

    def order(self, accession: str) -> dict[str, Any] | None:
        return self._row(
            "SELECT o.*, p.name AS patient_name, p.birth_date AS patient_birth_date,"
            " p.sex AS patient_sex, p.issuer AS patient_issuer"
            " FROM orders o LEFT JOIN patients p ON p.patient_id = o.patient_id"
            " WHERE o.accession = ?",
            (accession,),
        )

    def orders(
        self,
        *,
        status: str | None = None,
        patient_id: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where, params = [], []
        if status:
            where.append("o.status = ?")
            params.append(status)
        if patient_id:
            where.append("o.patient_id = ?")
            params.append(patient_id)
        sql = (
            "SELECT o.*, p.name AS patient_name, p.birth_date AS patient_birth_date,"
            " p.sex AS patient_sex, p.issuer AS patient_issuer"
            " FROM orders o LEFT JOIN patients p ON p.patient_id = o.patient_id"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY o.accession LIMIT ?"
        return self._rows(sql, [*params, limit])

    def find_order_for_step(
        self, accession: str, sps_id: str, rp_id: str, study_uid: str
    ) -> dict[str, Any] | None:
        """The order a Scheduled Step Attributes Sequence item names (accession first)."""
        if accession:
            row = self.order(accession)
            if row and (not sps_id or row["sps_id"] == sps_id):
                return row
        if study_uid:
            found = self._row("SELECT accession FROM orders WHERE study_uid = ?", (study_uid,))
            if found:
                return self.order(found["accession"])
        if sps_id and rp_id:
            found = self._row(
                "SELECT accession FROM orders WHERE sps_id = ? AND requested_procedure_id = ?",
                (sps_id, rp_id),
            )
            if found:
                return self.order(found["accession"])
        return None

    # -- MPPS --------------------------------------------------------------------------------

    def mpps(self, sop_uid: str) -> dict[str, Any] | None:
        row = self._row("SELECT * FROM mpps WHERE sop_uid = ?", (sop_uid,))
        if row:
            row["attributes"] = json.loads(row["attributes"])
        return row

    def mpps_list(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT sop_uid, status, accession, calling_ae, created_at, updated_at FROM mpps"
            " ORDER BY created_at DESC LIMIT ?",
            (limit,),
        )
        return rows

    def save_mpps(
        self, sop_uid: str, status: str, accession: str, calling_ae: str, attributes: dict
    ) -> None:
        stamp = now_text()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO mpps (sop_uid, status, accession, calling_ae, attributes,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(sop_uid) DO UPDATE SET status = excluded.status,"
                " attributes = excluded.attributes, updated_at = excluded.updated_at",
                (sop_uid, status, accession, calling_ae, json.dumps(attributes), stamp, stamp),
            )

    # -- inbound HL7 log ---------------------------------------------------------------------

    def log_inbound(self, row: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO inbound (time, peer, control_id, type, sender, ack_code,"
                " error_code, text, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now_text(),
                    row["peer"],
                    row["control_id"],
                    row["type"],
                    row["sender"],
                    row["ack_code"],
                    row.get("error_code"),
                    row["text"],
                    row["message"],
                ),
            )

    def accepted_duplicate(self, control_id: str, sender: str, message: str) -> dict | None:
        """An earlier accepted message with the same control ID, sender and text (a resend after
        a lost ACK), or None."""
        return self._row(
            "SELECT id, time FROM inbound WHERE control_id = ? AND sender = ? AND ack_code = 'AA'"
            " AND message = ? ORDER BY id LIMIT 1",
            (control_id, sender, message),
        )

    def inbound(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM inbound ORDER BY id DESC LIMIT ?", (limit,))

    # -- outbound queue ----------------------------------------------------------------------

    def enqueue(
        self,
        destination: str,
        control_id: str,
        kind: str,
        summary: str,
        message: str,
        state: str = Q_PENDING,
    ) -> int:
        stamp = now_text()
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO outbound (destination, control_id, type, summary, state, message,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (destination, control_id, kind, summary, state, message, stamp, stamp),
            )
            return int(cur.lastrowid or 0)

    def queue_entry(self, entry_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM outbound WHERE id = ?", (entry_id,))

    def queue(
        self, state: str | None = None, destination: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        where, params = [], []
        if state:
            where.append("state = ?")
            params.append(state)
        else:
            where.append("state <> ?")
            params.append(Q_DELETED)
        if destination:
            where.append("destination = ?")
            params.append(destination)
        return self._rows(
            f"SELECT * FROM outbound WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",  # noqa: S608
            [*params, limit],
        )

    def queue_head(self, destination: str, block_on_error: bool) -> dict[str, Any] | None:
        """The message the sender must deal with next: the oldest pending one, or (blocking)
        the oldest pending-or-dead one."""
        dead = Q_DEAD if block_on_error else Q_PENDING
        return self._row(
            "SELECT * FROM outbound WHERE destination = ? AND state IN (?, ?) ORDER BY id LIMIT 1",
            (destination, Q_PENDING, dead),
        )

    def queue_update(self, entry_id: int, **changes: Any) -> None:
        changes["updated_at"] = now_text()
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE outbound SET {', '.join(f'{k} = ?' for k in changes)}"  # noqa: S608
                " WHERE id = ?",
                [*changes.values(), entry_id],
            )

    def control_id_used(self, control_id: str, except_id: int) -> bool:
        return (
            self._row(
                "SELECT id FROM outbound WHERE control_id = ? AND id <> ?", (control_id, except_id)
            )
            is not None
        )

    def queue_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT state, COUNT(*) AS n FROM outbound GROUP BY state")
        counts = dict.fromkeys(QUEUE_STATES, 0)
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    def stats(self) -> dict[str, Any]:
        def count(sql: str) -> int:
            return int(self._rows(sql)[0]["n"])

        orders = self._rows("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")
        return {
            "patients": count("SELECT COUNT(*) AS n FROM patients WHERE status = 'active'"),
            "orders": {r["status"]: r["n"] for r in orders},
            "mpps": count("SELECT COUNT(*) AS n FROM mpps"),
            "inbound_messages": count("SELECT COUNT(*) AS n FROM inbound"),
            "queue": self.queue_counts(),
            "time": time.time(),
        }
