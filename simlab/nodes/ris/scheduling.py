"""What the RIS does with patients and orders, whoever asks: the admin API or inbound HL7.

Registering, updating and merging patients, placing and cancelling orders and following the
MPPS all change the database and queue the HL7 the destinations must get, in one transaction,
so a crash never leaves a change without its message or a message without its change.
Numbers (accession, requested procedure ID, scheduled step ID, Study Instance UID, patient ID)
come from the database counters: the same sequence of requests gives the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from simlab.common.ris_config import RisConfig
from simlab.nodes.ris.hl7_builder import Addressing, build_adt, build_orm
from simlab.nodes.ris.outbound import OutboundQueue
from simlab.nodes.ris.routing import apply_transforms, type_label
from simlab.nodes.ris.store import (
    ORDER_CANCELLED,
    ORDER_SCHEDULED,
    RisStore,
)


class SchedulingError(ValueError):
    """A request the RIS refuses, with the HTTP-like status and the field at fault."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


_PATIENT_FIELDS = ("patient_id", "issuer", "name", "birth_date", "sex")


class Scheduler:
    """Patients, orders and the outbound HL7 they cause (see the module docstring)."""

    def __init__(
        self,
        store: RisStore,
        queue: OutboundQueue,
        get_config: Callable[[], RisConfig],
        logger: logging.Logger,
    ) -> None:
        self._store = store
        self._queue = queue
        self._get_config = get_config
        self._logger = logger

    # -- outbound ----------------------------------------------------------------------------

    def _send_all(self, kind: str, summary: str, build: Callable[[Addressing, str], str]) -> None:
        """Queue one message per destination, through its route filter and transforms."""
        cfg = self._get_config()
        for dest in cfg.destinations:
            to = Addressing(cfg.hl7.application, cfg.hl7.facility, dest.application, dest.facility)
            control_id = self._queue.new_control_id()
            text = apply_transforms(build(to, control_id), dest.transforms)
            routed = dest.routes(type_label(kind))
            self._queue.enqueue(dest.name, control_id, kind, summary, text, routed=routed)

    # -- patients ----------------------------------------------------------------------------

    def register_patient(
        self, data: dict[str, Any], source: str = "admin", *, forward: bool = True
    ) -> tuple[dict[str, Any], bool]:
        """Register (or refresh) a patient and queue ADT^A04; returns (patient, created)."""
        patient = {k: str(data.get(k) or "") for k in _PATIENT_FIELDS}
        _check_sex(patient["sex"])
        with self._store.transaction():
            if not patient["patient_id"]:
                prefix = self._get_config().numbering.patient_id_prefix
                patient["patient_id"] = f"{prefix}{self._store.next_number('patient'):06d}"
            created = self._store.upsert_patient(patient, source)
            stored = self._store.patient(patient["patient_id"]) or patient
            if forward:
                self._send_all(
                    "ADT^A04",
                    f"patient {stored['patient_id']}",
                    lambda to, ctrl: build_adt(to, ctrl, "A04", stored),
                )
        self._logger.info(
            "patient %s %s (%s) by %s",
            stored["patient_id"],
            "registered" if created else "registration refreshed",
            stored["name"],
            source,
        )
        return stored, created

    def update_patient(
        self,
        patient_id: str,
        changes: dict[str, Any],
        source: str = "admin",
        *,
        forward: bool = True,
    ) -> dict[str, Any]:
        """Change demographics and queue ADT^A08."""
        with self._store.transaction():
            current = self._store.patient(patient_id)
            if current is None or current["status"] != "active":
                raise SchedulingError(404, f"no active patient {patient_id}", "patient_id")
            update = {
                k: str(changes[k] or "")
                for k in ("issuer", "name", "birth_date", "sex")
                if k in changes
            }
            _check_sex(update.get("sex", ""))
            self._store.upsert_patient({"patient_id": patient_id, **update}, source)
            stored = self._store.patient(patient_id) or {}
            if forward:
                self._send_all(
                    "ADT^A08",
                    f"patient {patient_id}",
                    lambda to, ctrl: build_adt(to, ctrl, "A08", stored),
                )
        self._logger.info("patient %s updated by %s: %s", patient_id, source, sorted(update))
        return stored

    def merge_patient(
        self, prior_id: str, target_id: str, source: str = "admin", *, forward: bool = True
    ) -> dict[str, Any]:
        """Merge prior into target (both must exist) and queue ADT^A40."""
        if prior_id == target_id:
            raise SchedulingError(409, "a patient cannot be merged into itself", "prior_id")
        with self._store.transaction():
            prior = self._store.patient(prior_id)
            target = self._store.patient(target_id)
            if prior is None or prior["status"] != "active":
                raise SchedulingError(404, f"no active patient {prior_id}", "prior_id")
            if target is None or target["status"] != "active":
                raise SchedulingError(404, f"no active patient {target_id}", "patient_id")
            moved = self._store.merge_patient(prior_id, target_id)
            if forward:
                self._send_all(
                    "ADT^A40",
                    f"patient {prior_id} into {target_id}",
                    lambda to, ctrl: build_adt(to, ctrl, "A40", target, prior_id),
                )
        self._logger.info(
            "patient %s merged into %s by %s (%d order(s) moved)",
            prior_id,
            target_id,
            source,
            moved,
        )
        return {"merged": prior_id, "into": target_id, "orders_moved": moved}

    # -- orders ------------------------------------------------------------------------------

    def place_order(
        self, data: dict[str, Any], source: str = "admin", *, forward: bool = True
    ) -> dict[str, Any]:
        """Schedule a procedure: accession, requested procedure, scheduled step, Study Instance
        UID; queue ORM^O01 NW. A given accession number that is already used is refused."""
        cfg = self._get_config()
        patient_id = str(data.get("patient_id") or "")
        modality = str(data.get("modality") or "").upper()
        if not modality:
            raise SchedulingError(422, "modality is required", "modality")
        start_date = str(data.get("start_date") or "")
        start_time = str(data.get("start_time") or "")
        if not (start_date.isdigit() and len(start_date) == 8):
            raise SchedulingError(422, "start_date must be YYYYMMDD", "start_date")
        if start_time and not start_time.replace(".", "").isdigit():
            raise SchedulingError(422, "start_time must be HHMM[SS]", "start_time")
        station = str(data.get("station_ae") or cfg.modality_stations.get(modality, "")).strip()
        with self._store.transaction():
            patient = self._store.patient(patient_id)
            if patient is None or patient["status"] != "active":
                raise SchedulingError(404, f"no active patient {patient_id!r}", "patient_id")
            number = self._store.next_number("order")
            accession = (
                str(data.get("accession") or "") or f"{cfg.numbering.accession_prefix}{number:06d}"
            )
            if self._store.order(accession) is not None:
                raise SchedulingError(409, f"accession {accession} is already used", "accession")
            order = {
                "accession": accession,
                "patient_id": patient_id,
                "placer_order": str(data.get("placer_order") or ""),
                "requested_procedure_id": str(
                    data.get("requested_procedure_id") or f"RP{number:06d}"
                ),
                "requested_procedure_description": str(
                    data.get("requested_procedure_description")
                    or data.get("procedure_meaning")
                    or ""
                ),
                "sps_id": str(data.get("sps_id") or f"SPS{number:06d}"),
                "sps_description": str(
                    data.get("sps_description") or data.get("procedure_meaning") or ""
                ),
                "study_uid": str(data.get("study_uid") or f"{cfg.numbering.uid_root}.1.{number}"),
                "station_ae": station,
                "modality": modality,
                "start_date": start_date,
                "start_time": start_time,
                "performing_physician": str(data.get("performing_physician") or ""),
                "referring_physician": str(data.get("referring_physician") or ""),
                "procedure_code": str(data.get("procedure_code") or ""),
                "procedure_scheme": str(data.get("procedure_scheme") or "LOCAL"),
                "procedure_meaning": str(data.get("procedure_meaning") or ""),
                "status": ORDER_SCHEDULED,
                "source": source,
            }
            self._store.insert_order(order)
            stored = self._store.order(accession) or order
            if forward:
                self._send_all(
                    "ORM^O01 NW",
                    f"order {accession}",
                    lambda to, ctrl: build_orm(to, ctrl, "NW", stored),
                )
        self._logger.info(
            "order %s scheduled by %s: patient %s, %s at %s on %s %s, study %s",
            accession,
            source,
            patient_id,
            modality,
            station or "(no station)",
            start_date,
            start_time,
            order["study_uid"],
        )
        return stored

    def cancel_order(
        self, accession: str, source: str = "admin", *, forward: bool = True
    ) -> dict[str, Any]:
        """Cancel a scheduled order (ORM^O01 CA); a started one cannot be cancelled."""
        with self._store.transaction():
            order = self._store.order(accession)
            if order is None:
                raise SchedulingError(404, f"no order {accession}", "accession")
            if order["status"] == ORDER_CANCELLED:
                return order
            if order["status"] != ORDER_SCHEDULED:
                raise SchedulingError(
                    409, f"order {accession} is {order['status']} and cannot be cancelled"
                )
            self._store.update_order(accession, {"status": ORDER_CANCELLED})
            stored = self._store.order(accession) or order
            if forward:
                self._send_all(
                    "ORM^O01 CA",
                    f"order {accession}",
                    lambda to, ctrl: build_orm(to, ctrl, "CA", stored),
                )
        self._logger.info("order %s cancelled by %s", accession, source)
        return stored

    def order_status_changed(self, accession: str, status: str, source: str) -> None:
        """Set an order's status (from MPPS) and queue ORM^O01 SC when configured."""
        with self._store.transaction():
            self._store.update_order(accession, {"status": status})
            stored = self._store.order(accession)
            if stored and self._get_config().mpps_status_updates:
                self._send_all(
                    "ORM^O01 SC",
                    f"order {accession} {status}",
                    lambda to, ctrl: build_orm(to, ctrl, "SC", stored),
                )
        self._logger.info("order %s is now %s (%s)", accession, status, source)


def _check_sex(sex: str) -> None:
    if sex and sex not in ("M", "F", "O", "U"):
        raise SchedulingError(422, f"sex {sex!r} must be M, F, O or U", "sex")
