"""The RIS's persistent outbound HL7 queue and the sender threads that drain it.

What an interface engine does, and what a PACS administrator has to manage when it goes wrong:

* every message is a row of ``outbound`` in ris.sqlite, written in the same transaction as the
  change that caused it, with its own MSH-10 control ID (never reused);
* one sender thread per destination sends that destination's messages in order, one at a time,
  over `simlab.common.mllp`'s client, and waits for each ACK;
* no connection / timeout / AE 206 (record locked): the message stays ``pending`` and is retried
  after an exponential backoff (``queue.backoff_initial`` doubled, at most ``queue.backoff_max``);
  after ``queue.max_attempts`` it goes ``dead``;
* AR, or AE with any other code: ``dead`` at once, keeping the refusing ACK (MSA-1, ERR-3, text);
* with ``queue.block_on_error`` (the default) a dead message at the head of a destination's queue
  blocks everything behind it until an administrator retries, edits or deletes it;
* a message the destination's route filter excludes is kept as ``filtered`` and never sent
  unless an administrator retries it; the destination's ``framing`` decides how the bytes go
  on the wire (a broken framing is a lab fault).

The threads wait on a Condition that enqueue, retry, edit, delete and config changes notify, with
a bounded timeout (the time to the next attempt, at most a few seconds): no busy polling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from simlab.common.hl7_messages import (
    AckCode,
    ErrorCode,
    Hl7Error,
    MshHeader,
    parse_inbound,
    read_ack,
    read_header,
)
from simlab.common.mllp import MllpConnection, MllpError
from simlab.common.ris_config import Hl7Destination, RisConfig
from simlab.nodes.ris.store import (
    Q_DEAD,
    Q_DELETED,
    Q_FILTERED,
    Q_PENDING,
    Q_SENT,
    RisStore,
    now_text,
)

_MAX_WAIT_S = 5.0
"""Longest a sender sleeps without being notified (it then re-reads its queue and config)."""
_IDLE_RECONNECT_S = 30.0
"""A connection unused this long is closed and opened anew before the next message, so a
receiver's idle timeout (60 s on simlab nodes) never costs a failed attempt."""


class QueueError(ValueError):
    """An administrator's queue action that cannot be done (unknown entry, bad message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class OutboundQueue:
    """Enqueue, deliver and administer outbound HL7 (see the module docstring)."""

    def __init__(
        self, store: RisStore, get_config: Callable[[], RisConfig], logger: logging.Logger
    ) -> None:
        self._store = store
        self._get_config = get_config
        self._logger = logger
        self._wake = threading.Condition()
        self._generation = 0
        """Bumped by every notify; a sender waits only if nothing changed since it looked."""
        self._stopping = threading.Event()
        self._threads: dict[str, threading.Thread] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self.sync_destinations()

    def stop(self) -> None:
        self._stopping.set()
        self.notify()
        for thread in self._threads.values():
            thread.join(10)
        self._threads.clear()

    def sync_destinations(self) -> None:
        """Start a sender for every configured destination not yet served (after config change).

        A sender whose destination was removed ends by itself; its messages stay queued.
        """
        for dest in self._get_config().destinations:
            thread = self._threads.get(dest.name)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(
                    target=self._run, args=(dest.name,), name=f"hl7-out-{dest.name}", daemon=True
                )
                self._threads[dest.name] = thread
                thread.start()
        self.notify()

    def notify(self) -> None:
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    def _seen(self) -> int:
        with self._wake:
            return self._generation

    @property
    def senders(self) -> dict[str, bool]:
        return {name: t.is_alive() for name, t in self._threads.items()}

    # -- enqueue -----------------------------------------------------------------------------

    def new_control_id(self) -> str:
        prefix = self._get_config().numbering.control_id_prefix
        return f"{prefix}{self._store.next_number('control_id'):010d}"

    def enqueue(
        self,
        destination: str,
        control_id: str,
        kind: str,
        summary: str,
        text: str,
        *,
        routed: bool = True,
    ) -> int:
        """Queue a message; one the route filter excludes (`routed=False`) is kept `filtered`."""
        if not routed:
            entry = self._store.enqueue(destination, control_id, kind, summary, text, Q_FILTERED)
            self._logger.warning(
                "HL7 out #%d %s ctrl=%s not sent to %s: excluded by the destination's route"
                " filter (message_types); kept as filtered (%s)",
                entry,
                kind,
                control_id,
                destination,
                summary,
            )
            return entry
        entry = self._store.enqueue(destination, control_id, kind, summary, text)
        self._logger.info(
            "HL7 out queued #%d %s ctrl=%s to %s (%s)",
            entry,
            kind,
            control_id,
            destination,
            summary,
        )
        self.notify()
        return entry

    def inject(self, destination: str, raw: str) -> dict:
        """Queue a raw message an administrator typed or pasted (an interface engine's "send
        message"), validated like an edit; it takes its place at the end of the queue."""
        if self._get_config().destination(destination) is None:
            raise QueueError(404, f"no destination {destination!r}")
        text, header = self._validated(raw, None)
        entry = self.enqueue(
            destination, header.control_id, header.type_label, "queued by admin", text
        )
        return self._entry(entry)

    # -- administration ----------------------------------------------------------------------

    def _entry(self, entry_id: int) -> dict:
        row = self._store.queue_entry(entry_id)
        if row is None or row["state"] == Q_DELETED:
            raise QueueError(404, f"no queued message #{entry_id}")
        return row

    def retry(self, entry_id: int) -> dict:
        row = self._entry(entry_id)
        if row["state"] == Q_SENT:
            raise QueueError(409, f"message #{entry_id} was already delivered")
        self._store.queue_update(entry_id, state=Q_PENDING, attempts=0, next_attempt=0)
        self._logger.info(
            "HL7 out #%d ctrl=%s: retry requested by admin", entry_id, row["control_id"]
        )
        self.notify()
        return self._entry(entry_id)

    def edit(self, entry_id: int, raw: str) -> dict:
        """Replace a queued message's text (validated as HL7) and make it pending again."""
        row = self._entry(entry_id)
        if row["state"] == Q_SENT:
            raise QueueError(409, f"message #{entry_id} was already delivered")
        text, header = self._validated(raw, entry_id)
        self._store.queue_update(
            entry_id,
            message=text,
            control_id=header.control_id,
            type=header.type_label,
            state=Q_PENDING,
            attempts=0,
            next_attempt=0,
        )
        self._logger.info(
            "HL7 out #%d ctrl=%s: message edited by admin, pending again",
            entry_id,
            header.control_id,
        )
        self.notify()
        return self._entry(entry_id)

    def _validated(self, raw: str, entry_id: int | None) -> tuple[str, MshHeader]:
        """Raw text as a queued message (CR segments) and its MSH; QueueError when not HL7."""
        text = raw.replace("\r\n", "\r").replace("\n", "\r")
        if not text.endswith("\r"):
            text += "\r"
        try:
            header = read_header(text)
            parse_inbound(text.encode("utf-8"), header)
        except Hl7Error as exc:
            raise QueueError(422, f"not a valid HL7 message: {exc.text}") from None
        if not header.control_id:
            raise QueueError(422, "MSH-10 message control ID is empty")
        if self._store.control_id_used(header.control_id, -1 if entry_id is None else entry_id):
            raise QueueError(409, f"MSH-10 {header.control_id} is used by another message")
        return text, header

    def delete(self, entry_id: int) -> dict:
        row = self._entry(entry_id)
        self._store.queue_update(entry_id, state=Q_DELETED)
        self._logger.info(
            "HL7 out #%d ctrl=%s (%s, %s) deleted by admin",
            entry_id,
            row["control_id"],
            row["type"],
            row["state"],
        )
        self.notify()
        return {"deleted": entry_id, "control_id": row["control_id"]}

    # -- the sender --------------------------------------------------------------------------

    def _wait(self, seconds: float, seen: int) -> None:
        """Sleep until notified or `seconds` pass; not at all if notified since `seen` (so a
        message queued while the sender was looking is never missed)."""
        with self._wake:
            if not self._stopping.is_set() and self._generation == seen:
                self._wake.wait(max(0.0, min(seconds, _MAX_WAIT_S)))

    def _run(self, name: str) -> None:
        connection: MllpConnection | None = None
        blocked: tuple[int, int] | None = None
        last_used = time.monotonic()
        try:
            while not self._stopping.is_set():
                seen = self._seen()
                cfg = self._get_config()
                dest = cfg.destination(name)
                if dest is None:
                    return
                if not dest.enabled:
                    self._wait(_MAX_WAIT_S, seen)
                    continue
                head = self._store.queue_head(name, cfg.queue.block_on_error)
                if head is not None and head["state"] == Q_DEAD:
                    blocked = self._report_blocked(name, head, blocked)
                    self._wait(_MAX_WAIT_S, seen)
                    continue
                blocked = None
                if head is None:
                    self._wait(_MAX_WAIT_S, seen)
                    continue
                delay = head["next_attempt"] - time.time()
                if delay > 0:
                    self._wait(delay, seen)
                    continue
                if connection is not None and time.monotonic() - last_used > _IDLE_RECONNECT_S:
                    connection.close()
                    connection = None
                connection = self._deliver(dest, cfg, head, connection)
                last_used = time.monotonic()
        except Exception:
            self._logger.exception("HL7 out sender for %s failed", name)
        finally:
            if connection is not None:
                connection.close()

    def _report_blocked(
        self, name: str, head: dict, before: tuple[int, int] | None
    ) -> tuple[int, int]:
        """Log once per change: which dead message blocks the queue, how many wait behind it."""
        waiting = len(self._store.queue(Q_PENDING, name))
        now = (int(head["id"]), waiting)
        if now != before:
            self._logger.warning(
                "HL7 out queue to %s blocked by dead message #%d ctrl=%s (%d waiting behind it)",
                name,
                head["id"],
                head["control_id"],
                waiting,
            )
        return now

    def _deliver(
        self, dest: Hl7Destination, cfg: RisConfig, row: dict, connection: MllpConnection | None
    ) -> MllpConnection | None:
        if connection is not None and (connection.host, connection.port, connection.framing) != (
            dest.host,
            dest.port,
            dest.framing,
        ):
            connection.close()
            connection = None
        if connection is None:
            connection = MllpConnection(
                dest.host, dest.port, dest.ack_timeout, framing=dest.framing
            )
        connection.timeout = dest.ack_timeout
        attempt = row["attempts"] + 1
        try:
            raw_ack = connection.send(row["message"].encode("utf-8"))
        except MllpError as exc:
            self._failed(cfg, row, attempt, str(exc))
            return None
        try:
            ack = read_ack(raw_ack)
        except Hl7Error as exc:
            self._failed(cfg, row, attempt, f"unreadable ACK: {exc.text}")
            return connection
        if ack.ack_code in (AckCode.ACCEPT, "CA"):
            self._store.queue_update(
                row["id"],
                state=Q_SENT,
                attempts=attempt,
                ack_code=ack.ack_code,
                ack_text=ack.text,
                ack=raw_ack.decode("utf-8", "replace"),
                last_error="",
                sent_at=now_text(),
            )
            self._logger.info(
                "HL7 out #%d %s ctrl=%s to %s: ACK %s (attempt %d)",
                row["id"],
                row["type"],
                row["control_id"],
                dest.name,
                ack.ack_code,
                attempt,
            )
            return connection
        detail = f"ACK {ack.ack_code}" + (f" {ack.error_code}" if ack.error_code else "")
        detail += f": {ack.text}" if ack.text else ""
        ack_fields = {
            "ack_code": ack.ack_code,
            "ack_error_code": ack.error_code,
            "ack_text": ack.text,
            "ack": raw_ack.decode("utf-8", "replace"),
        }
        transient = (
            ack.ack_code == AckCode.ERROR and ack.error_code == ErrorCode.APPLICATION_RECORD_LOCKED
        )
        if transient:
            self._failed(cfg, row, attempt, detail, **ack_fields)
        else:
            self._dead(row, attempt, detail, **ack_fields)
        return connection

    def _failed(
        self, cfg: RisConfig, row: dict, attempt: int, error: str, **fields: object
    ) -> None:
        if attempt >= cfg.queue.max_attempts:
            self._dead(row, attempt, f"{error} (after {attempt} attempts)", **fields)
            return
        backoff = min(cfg.queue.backoff_max, cfg.queue.backoff_initial * 2 ** (attempt - 1))
        self._store.queue_update(
            row["id"],
            attempts=attempt,
            next_attempt=time.time() + backoff,
            last_error=error,
            **fields,
        )
        self._logger.warning(
            "HL7 out #%d %s ctrl=%s to %s: attempt %d failed: %s; retry in %.1fs",
            row["id"],
            row["type"],
            row["control_id"],
            row["destination"],
            attempt,
            error,
            backoff,
        )

    def _dead(self, row: dict, attempt: int, error: str, **fields: object) -> None:
        self._store.queue_update(
            row["id"], state=Q_DEAD, attempts=attempt, last_error=error, **fields
        )
        blocking = self._get_config().queue.block_on_error
        self._logger.error(
            "HL7 out #%d %s ctrl=%s to %s: dead letter after attempt %d: %s%s",
            row["id"],
            row["type"],
            row["control_id"],
            row["destination"],
            attempt,
            error,
            "; the queue is blocked until it is retried, edited or deleted" if blocking else "",
        )
