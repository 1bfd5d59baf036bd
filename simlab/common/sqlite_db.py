"""One SQLite database file of a node: one connection, one re-entrant lock, WAL journal.

Every node keeps its records in SQLite the same way: a single connection shared by the node's
threads (DICOM associations, MLLP connections, the admin API) behind a lock, and writes in
`BEGIN IMMEDIATE` transactions that either commit whole or roll back. What differs per store is
only how durable a commit must be and how long to wait for a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal


class SqliteDatabase:
    """Base of a node's SQLite store.

    Args:
        path: The database file (created with its directory on open).
        schema: SQL run on every open (CREATE TABLE IF NOT EXISTS ...).
        synchronous: "FULL" when a commit must survive power loss (an ACK depends on it),
            "NORMAL" when the data can be rebuilt (WAL still survives a process crash).
        busy_timeout: Seconds to wait for a lock held by another connection.
        foreign_keys: Enforce FOREIGN KEY constraints.
        what: Names the database in errors ("the RIS database").
    """

    def __init__(
        self,
        path: Path,
        *,
        schema: str,
        synchronous: Literal["FULL", "NORMAL"],
        busy_timeout: float,
        foreign_keys: bool = False,
        what: str = "the database",
    ) -> None:
        self.path = path
        self._schema = schema
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._foreign_keys = foreign_keys
        self._what = what
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def open(self) -> None:
        """Create or open the database and its tables."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        if self._foreign_keys:
            conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(self._schema)
        self._conn = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"{self._what} is not open")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block (or the COMMIT) fails.

        Re-entrant: a transaction opened inside another joins the outer one.
        """
        with self._lock:
            conn = self.conn
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
