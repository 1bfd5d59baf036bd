"""The send queue worker: C-STORE SCU to the destination PACS (IHE RAD-8).

One association per batch; each image is sent from its file (pynetdicom streams it); every
outcome is recorded per image with the code a technologist would see: an A-ASSOCIATE-RJ
(result/source/reason), a rejected presentation context, or the C-STORE status. Failures are
retried with a bounded exponential backoff until `max_attempts`, then wait for an operator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE

from fake_modalities.node.scu import associate, context_text, sop_name
from fake_modalities.node.store import FAILED, SENDING, SENT, ModalityStore
from simlab.common.dicom_status import describe, hex_status
from simlab.common.modality_config import ModalityConfig


class Sender:
    """Background thread draining the send queue."""

    def __init__(
        self,
        store: ModalityStore,
        get_config: Callable[[], ModalityConfig],
        logger: logging.Logger,
    ) -> None:
        self._store = store
        self._config = get_config
        self._logger = logger
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="send-queue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def wake(self) -> None:
        """Look at the queue now (new images, an operator's retry)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            cfg = self._config()
            try:
                batch = self._store.due(cfg.send_queue.batch_size, time.time())
                if batch:
                    try:
                        self._send_batch(cfg, batch)
                    except Exception as exc:
                        self._logger.exception("send queue: unexpected error in a batch")
                        for item in batch:
                            row = self._store.queue_item(item["id"])
                            if row and row["state"] == SENDING:
                                self._failed(cfg, item, None, f"internal error: {exc}")
                    continue
            except Exception:
                self._logger.exception("send queue: unexpected error")
            self._wake.wait(cfg.send_queue.poll_interval)
            self._wake.clear()

    def _send_batch(self, cfg: ModalityConfig, batch: list[dict[str, Any]]) -> None:
        self.batches += 1
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.acse_timeout = ae.dimse_timeout = cfg.association_timeout
        ae.network_timeout = cfg.association_timeout
        # Each file goes in the transfer syntax it was written in (as a real modality's queue
        # does): images acquired before a transfer-syntax change still go out after it.
        syntax = {item["id"]: _file_syntax(item["path"], cfg) for item in batch}
        for sop_class, ts in sorted({(i["sop_class"], syntax[i["id"]]) for i in batch}):
            ae.add_requested_context(sop_class, [ts])
        opened = associate(ae, cfg.destination, self._logger, f"C-STORE x{len(batch)}")
        if not opened.ok or opened.assoc is None:
            for item in batch:
                self._failed(cfg, item, None, opened.error)
            self._summary(batch, {})
            return
        assoc = opened.assoc
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        outcomes: dict[int, str] = {}
        try:
            for item in batch:
                if self._stop.is_set():
                    self._store.mark(item["id"], "pending", None, "", item["attempts"], 0)
                    continue
                if (item["sop_class"], syntax[item["id"]]) not in accepted:
                    text = context_text(assoc.rejected_contexts, item["sop_class"])
                    self._failed(cfg, item, None, text)
                    outcomes[item["id"]] = text
                    continue
                if not assoc.is_established:
                    self._failed(cfg, item, None, "association aborted during the send")
                    continue
                try:
                    status = assoc.send_c_store(item["path"])
                except (OSError, ValueError) as exc:
                    self._failed(cfg, item, None, f"cannot send {item['path']}: {exc}")
                    continue
                if not status:
                    self._failed(cfg, item, None, "no C-STORE response (DIMSE timeout or A-ABORT)")
                    continue
                code = int(status.Status)
                text = f"{hex_status(code)} {describe(code)}"
                if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
                    self._store.mark(item["id"], SENT, code, text, item["attempts"] + 1, 0)
                    self._logger.info(
                        "C-STORE %s %s: %s",
                        sop_name(item["sop_class"]),
                        item["sop_instance"],
                        text,
                    )
                else:
                    self._logger.warning(
                        "C-STORE %s %s: %s",
                        sop_name(item["sop_class"]),
                        item["sop_instance"],
                        text,
                    )
                    self._failed(cfg, item, code, text)
        finally:
            if assoc.is_established:
                assoc.release()
        self._summary(batch, outcomes)

    def _failed(
        self, cfg: ModalityConfig, item: dict[str, Any], code: int | None, reason: str
    ) -> None:
        attempts = item["attempts"] + 1
        q = cfg.send_queue
        if attempts >= q.max_attempts:
            next_attempt = -1.0  # no automatic retry: the console shows it failed
        else:
            delay = min(q.backoff_max, q.backoff_initial * 2 ** (attempts - 1))
            next_attempt = time.time() + delay
        self._store.mark(item["id"], FAILED, code, reason, attempts, next_attempt)

    def _summary(self, batch: list[dict[str, Any]], _outcomes: dict[int, str]) -> None:
        rows = [self._store.queue_item(item["id"]) for item in batch]
        failed = [r for r in rows if r and r["state"] == FAILED]
        sent = [r for r in rows if r and r["state"] == SENT]
        if failed:
            reasons = sorted({r["reason"] for r in failed})
            self._logger.warning(
                "send batch: %d sent, %d images failed: %s",
                len(sent),
                len(failed),
                "; ".join(reasons),
            )
        else:
            self._logger.info("send batch: %d images sent", len(sent))


def _file_syntax(path: str, cfg: ModalityConfig) -> str:
    """The transfer syntax a queued file is encoded in (its File Meta, PS3.10 7.1); the
    configured one when the file cannot be read (the send then reports the read error)."""
    try:
        return str(read_file_meta_info(path).TransferSyntaxUID)
    except (OSError, ValueError, AttributeError, InvalidDicomError):
        return cfg.acquisition.transfer_syntax
