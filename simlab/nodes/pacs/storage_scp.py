"""The Verification and Storage SCPs: C-ECHO, and C-STORE into the archive.

A C-STORE is handed to the archive as received (never decoded beyond its header); its status is
what the archive answers, and every C-STORE leaves one line in the node log. It is its own module
because storage is the PACS's hot path: nothing here should cost more than the archive's write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset

from simlab.common.dicom_status import Status
from simlab.nodes.pacs.archive import Archive
from simlab.nodes.pacs.scp_common import status_dataset, uid_name


class StorageScp:
    """C-ECHO and C-STORE handlers.

    Args:
        archive: where objects are stored.
        logger: the node log.
        count_store: told of each C-STORE's outcome (association, success) for the closing line.
    """

    def __init__(
        self,
        archive: Archive,
        logger: logging.Logger,
        count_store: Callable[[Any, bool], None],
    ) -> None:
        self._archive = archive
        self._logger = logger
        self._count_store = count_store

    def handle_c_echo(self, event: Any) -> int:
        """Verification SCP."""
        self._logger.info("C-ECHO from %s: 0x0000 Success", event.assoc.requestor.ae_title)
        return Status.SUCCESS

    def handle_c_store(self, event: Any) -> Dataset:
        """Archive the data set as received (never decoded beyond its header)."""
        req = event.request
        calling = event.assoc.requestor.ae_title
        sop_class_uid = str(req.AffectedSOPClassUID or "")
        sop_instance_uid = str(req.AffectedSOPInstanceUID or "")
        try:
            status, comment = self._archive.store(
                req.DataSet.getvalue(),
                str(event.context.transfer_syntax),
                sop_class_uid,
                sop_instance_uid,
                calling,
            )
        except Exception as exc:  # never let a bug abort a modality's association
            self._logger.exception("C-STORE %s: internal error", sop_instance_uid)
            status, comment = Status.PROCESSING_FAILURE, f"internal error: {exc}"
        self._count_store(event.assoc, status == Status.SUCCESS)
        self._logger.log(
            logging.INFO if status == Status.SUCCESS else logging.WARNING,
            "C-STORE %s %s from %s: %s",
            uid_name(sop_class_uid),
            sop_instance_uid,
            calling,
            Archive.describe_result(status, comment),
        )
        return status_dataset(status, comment)
