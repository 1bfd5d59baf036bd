"""The modality's durable state in one SQLite file: procedures, send queue, commitments.

A restart (or a crash) keeps everything: images not yet sent are still queued, a procedure in
progress is still in progress. One connection guarded by a lock; WAL and synchronous=FULL.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS procedures (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    procedure_id TEXT NOT NULL,
    path TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    sop_instance TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_state ON queue(state, next_attempt);
CREATE TABLE IF NOT EXISTS commitments (
    transaction_uid TEXT PRIMARY KEY,
    procedure_id TEXT NOT NULL,
    state TEXT NOT NULL,
    requested REAL NOT NULL,
    reported REAL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
DELETED = "deleted"
"""An item the operator deleted: kept, so the console (and an audit) still shows it was."""


class ModalityStore:
    """Procedures, the send queue and commitment transactions, persisted."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            # A send interrupted by a crash is sent again: the PACS answers a duplicate anyway.
            self._db.execute("UPDATE queue SET state=? WHERE state=?", (PENDING, SENDING))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # key/value -------------------------------------------------------------------------------
    def get_value(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def set_value(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO kv(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value)),
            )

    def next_counter(self, name: str) -> int:
        """1, 2, 3... per name, durable: procedure numbers and registrations stay stable."""
        with self._lock:
            value = int(self.get_value(f"counter:{name}", 0)) + 1
            self.set_value(f"counter:{name}", value)
            return value

    # procedures ------------------------------------------------------------------------------
    def add_procedure(self, proc_id: str, seq: int, state: str, data: dict[str, Any]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO procedures(id, seq, state, data, created, updated) "
                "VALUES(?, ?, ?, ?, ?, ?)",
                (proc_id, seq, state, json.dumps(data), now, now),
            )

    def update_procedure(self, proc_id: str, state: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE procedures SET state=?, data=?, updated=? WHERE id=?",
                (state, json.dumps(data), time.time(), proc_id),
            )

    def procedure(self, proc_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM procedures WHERE id=?", (proc_id,)).fetchone()
        return None if row is None else _procedure(row)

    def procedures(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM procedures ORDER BY seq").fetchall()
        return [_procedure(r) for r in rows]

    # queue -----------------------------------------------------------------------------------
    def enqueue(self, proc_id: str, items: list[tuple[str, str, str, str]]) -> None:
        """Queue (path, sop_class, sop_instance, series_uid) rows in one transaction."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO queue(procedure_id, path, sop_class, sop_instance, series_uid, "
                    "state, updated) VALUES(?, ?, ?, ?, ?, ?, ?)",
                    [(proc_id, *item, PENDING, now) for item in items],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def due(self, limit: int, now: float) -> list[dict[str, Any]]:
        """Items to send now (pending, or failed with a retry due), marked as sending."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM queue WHERE state IN (?, ?) AND next_attempt <= ? "
                "AND next_attempt >= 0 ORDER BY id LIMIT ?",
                (PENDING, FAILED, now, limit),
            ).fetchall()
            ids = [r["id"] for r in rows]
            self._db.executemany(
                "UPDATE queue SET state=?, updated=? WHERE id=?",
                [(SENDING, now, i) for i in ids],
            )
        return [dict(r) for r in rows]

    def mark(
        self,
        item_id: int,
        state: str,
        status: int | None,
        reason: str,
        attempts: int,
        next_attempt: float,
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE queue SET state=?, status=?, reason=?, attempts=?, next_attempt=?, "
                "updated=? WHERE id=?",
                (state, status, reason, attempts, next_attempt, time.time(), item_id),
            )

    def queue(self, state: str | None = None, procedure_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM queue WHERE 1=1", []
        if state:
            sql += " AND state=?"
            args.append(state)
        else:
            sql += " AND state<>?"
            args.append(DELETED)
        if procedure_id:
            sql += " AND procedure_id=?"
            args.append(procedure_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [dict(r) for r in rows]

    def queue_snapshot(
        self, state: str | None = None, procedure_id: str | None = None
    ) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Counts and items read together, so a console never shows them disagreeing."""
        with self._lock:
            return self.queue_counts(), self.queue(state, procedure_id)

    def queue_item(self, item_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM queue WHERE id=?", (item_id,)).fetchone()
        return None if row is None else dict(row)

    def retry(self, item_ids: list[int] | None = None) -> int:
        """Put failed items back as pending, due now, with a fresh attempt budget."""
        with self._lock:
            if item_ids is None:
                cur = self._db.execute(
                    "UPDATE queue SET state=?, attempts=0, next_attempt=0, updated=? WHERE state=?",
                    (PENDING, time.time(), FAILED),
                )
            else:
                cur = self._db.executemany(
                    "UPDATE queue SET state=?, attempts=0, next_attempt=0, updated=? "
                    "WHERE state=? AND id=?",
                    [(PENDING, time.time(), FAILED, i) for i in item_ids],
                )
            return cur.rowcount

    def delete_item(self, item_id: int) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE queue SET state=?, updated=? WHERE id=? AND state NOT IN (?, ?)",
                (DELETED, time.time(), item_id, SENDING, DELETED),
            )
            return cur.rowcount > 0

    def queue_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) AS n FROM queue GROUP BY state"
            ).fetchall()
        counts = {PENDING: 0, SENDING: 0, SENT: 0, FAILED: 0}
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    # commitments -----------------------------------------------------------------------------
    def add_commitment(self, transaction: str, proc_id: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO commitments(transaction_uid, procedure_id, state, requested, detail) "
                "VALUES(?, ?, ?, ?, ?)",
                (transaction, proc_id, "requested", time.time(), json.dumps(detail)),
            )

    def update_commitment(self, transaction: str, state: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE commitments SET state=?, reported=?, detail=? WHERE transaction_uid=?",
                (state, time.time(), json.dumps(detail), transaction),
            )

    def commitment(self, transaction: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM commitments WHERE transaction_uid=?", (transaction,)
            ).fetchone()
        return None if row is None else _commitment(row)

    def commitments(self, procedure_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM commitments", []
        if procedure_id:
            sql += " WHERE procedure_id=?"
            args.append(procedure_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY requested", args).fetchall()
        return [_commitment(r) for r in rows]


def _procedure(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "state": row["state"], **json.loads(row["data"])}


def _commitment(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "transaction_uid": row["transaction_uid"],
        "procedure_id": row["procedure_id"],
        "state": row["state"],
        "requested": row["requested"],
        "reported": row["reported"],
        **json.loads(row["detail"]),
    }
