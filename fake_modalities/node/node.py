"""ModalityNode: the console's operations, wired to the worklist, MPPS, queue and listener."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pynetdicom import AE

from fake_modalities.images import derive_uid
from fake_modalities.node import acquisition, tag_settings
from fake_modalities.node.admin_routes import build_routes
from fake_modalities.node.commitment import Commitments, DicomListener
from fake_modalities.node.mpps import send_mpps
from fake_modalities.node.sender import Sender
from fake_modalities.node.store import ModalityStore
from fake_modalities.node.typos import keyed
from fake_modalities.node.worklist import WorklistError, effective_filters, query_worklist
from simlab.common.admin_server import AdminServer, ApiError
from simlab.common.live_config import LiveConfigNode
from simlab.common.modality_config import ModalityConfig

REGISTERED = "registered"
IN_PROGRESS = "in progress"
COMPLETED = "completed"
DISCONTINUED = "discontinued"


class ModalityNode(LiveConfigNode[ModalityConfig]):
    """The modality process. Operator actions are serialised (one console, one technologist)."""

    def __init__(self, config_path: Path, config: ModalityConfig, token: str) -> None:
        super().__init__(config_path, config, token)
        self._action_lock = threading.RLock()
        self.outbox = self.data_dir / "outbox"
        self.store = ModalityStore(self.data_dir / "modality.sqlite")
        self.sender = Sender(self.store, self.get_config, self.logger)
        self.commitments = Commitments(self.store, self.get_config, self.logger)
        self.listener = DicomListener(self.get_config, self.commitments, self.logger)
        self.admin = AdminServer(
            config.admin.host, config.admin.port, token, build_routes(self), self.logger
        )

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.listener.start()
        self.sender.start()
        self.admin.start()
        cfg = self.get_config()
        counts = self.store.queue_counts()
        self.logger.info(
            "%s modality %s started: DICOM %s@%s:%d, destination %s@%s:%d, admin %s:%d; "
            "send queue: %d pending, %d failed",
            cfg.profile,
            cfg.node_id,
            cfg.dicom.ae_title,
            cfg.dicom.host,
            cfg.dicom.port,
            cfg.destination.ae_title,
            cfg.destination.host,
            cfg.destination.port,
            cfg.admin.host,
            cfg.admin.port,
            counts["pending"],
            counts["failed"],
        )

    def stop(self) -> None:
        self.logger.info("modality %s stopping", self.get_config().node_id)
        self.commitments.stop()
        # The HTTP and DICOM servers each poll for shutdown; stop them side by side.
        stoppers = [
            threading.Thread(target=stop, name=f"stop-{name}")
            for name, stop in (
                ("admin", self.admin.stop),
                ("sender", self.sender.stop),
                ("dicom", self.listener.stop),
            )
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(timeout=20)
        self.store.close()

    def _config_changed(self, old: ModalityConfig, new: ModalityConfig) -> list[str]:
        """Restart the listener when its address changed; wake the sender for the new config."""
        restarted = []
        if old.dicom != new.dicom or old.destination.ae_title != new.destination.ae_title:
            self.listener.stop()
            self.listener.start()
            restarted.append("dicom")
        self.sender.wake()
        return restarted

    def _scu(self) -> AE:
        cfg = self.get_config()
        ae = AE(ae_title=cfg.dicom.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = cfg.association_timeout
        return ae

    # worklist --------------------------------------------------------------------------------
    def query_worklist(self, overrides: dict[str, Any]) -> dict[str, Any]:
        cfg = self.get_config()
        filters = effective_filters(cfg, overrides)
        try:
            items = query_worklist(self._scu(), cfg, filters, self.logger)
        except WorklistError as exc:
            raise ApiError(502, str(exc), {"filters": filters}) from None
        result = {"queried_at": time.time(), "filters": filters, "items": items}
        self.store.set_value("worklist", result)
        return result

    def worklist(self) -> dict[str, Any]:
        return self.store.get_value("worklist", {"queried_at": None, "filters": {}, "items": []})

    # procedures ------------------------------------------------------------------------------
    def register_unscheduled(self, body: dict[str, Any]) -> dict[str, Any]:
        """The operator keys a patient by hand (no worklist item); typos may creep in."""
        for field in ("patient_id", "patient_name"):
            if not str(body.get(field, "")).strip():
                raise ApiError(400, f"{field} is required")
        cfg = self.get_config()
        with self._action_lock:
            registration = self.store.next_counter("registration")
            typos: dict[str, Any] = {}
            item: dict[str, str] = {
                "patient_name": str(body["patient_name"]),
                "birth_date": str(body.get("birth_date", "")),
                "sex": str(body.get("sex", "")),
                "referring_physician": "",
                "requested_procedure_id": "",
                "requested_procedure_description": str(body.get("procedure_description", "")),
                "scheduled_procedure_step_id": "",
                "scheduled_procedure_step_description": str(body.get("procedure_description", "")),
                "modality": _modality(cfg),
                "registered_at": datetime.now().strftime("%Y%m%d%H%M%S"),
            }
            for field in ("patient_id", "accession_number"):
                intended = str(body.get(field, "")).strip()
                typed, kind = keyed(intended, cfg.operator_typo_rate, cfg.seed, registration, field)
                item[field] = typed
                if kind:
                    typos[field] = {"intended": intended, "typed": typed, "error": kind}
            study_uid = str(
                derive_uid(
                    cfg.seed,
                    "unscheduled-study",
                    registration,
                    item["patient_id"],
                    item["accession_number"],
                )
            )
            item["study_instance_uid"] = study_uid
            proc = self._new_procedure("unscheduled", item, REGISTERED)
            proc["typos"] = typos
            self.store.update_procedure(proc["id"], REGISTERED, _data(proc))
        self.logger.info(
            "patient registered by hand: %s %s, accession %s -> procedure %s%s",
            item["patient_id"],
            item["patient_name"],
            item["accession_number"] or "(none)",
            proc["id"],
            "; typing errors: "
            + ", ".join(
                f"{k} {v['intended']!r} typed {v['typed']!r} ({v['error']})"
                for k, v in typos.items()
            )
            if typos
            else "",
        )
        return proc

    def _new_procedure(self, source: str, item: dict[str, str], state: str) -> dict[str, Any]:
        cfg = self.get_config()
        seq = self.store.next_counter("procedure")
        proc_id = f"P{seq:04d}"
        study_uid = item.get("study_instance_uid") or str(
            derive_uid(
                cfg.seed, "study", item.get("patient_id", ""), item.get("accession_number", "")
            )
        )
        # The same item started again (a repeat) gets new UIDs; otherwise the seed and the item
        # alone decide them, whatever else the console did before.
        key = _item_key(item)
        attempt = 1 + sum(1 for p in self.store.procedures() if _item_key(p["item"]) == key)
        proc: dict[str, Any] = {
            "id": proc_id,
            "state": state,
            "source": source,
            "item": item,
            "study_instance_uid": study_uid,
            "modality": _modality(cfg),
            "pps_id": proc_id,
            "mpps_uid": str(derive_uid(cfg.seed, "mpps", *key, attempt)),
            "mpps_created": False,
            "mpps": [],
            "attempt": attempt,
            "seed": acquisition.procedure_seed(cfg.seed, item, attempt),
            "series": [],
        }
        self.store.add_procedure(proc_id, seq, state, _data(proc))
        return proc

    def start_procedure(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._action_lock:
            proc_id = body.get("procedure_id")
            if proc_id:
                proc = self._procedure(str(proc_id))
                if proc["state"] != REGISTERED:
                    raise ApiError(409, f"procedure {proc_id} is {proc['state']}")
            else:
                item = self._pick_item(body.get("accession_number"))
                proc = self._new_procedure("worklist", item, REGISTERED)
            return self._start(proc)

    def _pick_item(self, accession: str | None) -> dict[str, str]:
        items = self.worklist()["items"]
        started = {
            (p["item"].get("accession_number"), p["item"].get("scheduled_procedure_step_id"))
            for p in self.store.procedures()
            if p["source"] == "worklist"
        }
        for item in items:
            key = (item.get("accession_number"), item.get("scheduled_procedure_step_id"))
            if accession and item.get("accession_number") != accession:
                continue
            if key in started and not accession:
                continue
            return item
        if accession:
            raise ApiError(404, f"accession {accession} is not in the last worklist result")
        raise ApiError(404, "no scheduled worklist item left; query the worklist again")

    def _start(self, proc: dict[str, Any]) -> dict[str, Any]:
        cfg = self.get_config()
        proc["state"] = IN_PROGRESS
        proc["started_at"] = time.time()
        self.logger.info(
            "procedure %s started: patient %s %s, accession %s, study %s",
            proc["id"],
            proc["item"].get("patient_id"),
            proc["item"].get("patient_name"),
            proc["item"].get("accession_number"),
            proc["study_instance_uid"],
        )
        error = send_mpps(self._scu(), cfg, proc, True, "IN PROGRESS", self.logger)
        proc["mpps_created"] = not error
        proc["mpps"].append({"status": "IN PROGRESS", "ok": not error, "error": error})
        self.store.update_procedure(proc["id"], IN_PROGRESS, _data(proc))
        return proc

    def acquire(self, proc_id: str) -> dict[str, Any]:
        cfg = self.get_config()
        with self._action_lock:
            proc = self._procedure(proc_id)
            if proc["state"] != IN_PROGRESS:
                raise ApiError(409, f"procedure {proc_id} is {proc['state']}, not in progress")
            directory = self.outbox / proc_id
            new_series = []
            queued: list[tuple[str, str, str, str]] = []
            for _ in range(cfg.acquisition.series_per_procedure):
                number = len(proc["series"]) + len(new_series) + 1
                datasets = acquisition.generate(cfg, proc, number)
                instances = []
                for ds in datasets:
                    tag_settings.apply(ds, cfg.acquisition)
                    acquisition.encode(ds, cfg.acquisition.transfer_syntax)
                    name = f"{ds.Modality}{number:03d}_{int(ds.InstanceNumber):05d}.dcm"
                    path = acquisition.write_durably(ds, directory / name)
                    instances.append(str(ds.SOPInstanceUID))
                    queued.append(
                        (
                            str(path),
                            str(ds.SOPClassUID),
                            str(ds.SOPInstanceUID),
                            str(ds.SeriesInstanceUID),
                        )
                    )
                first = datasets[0]
                new_series.append(
                    {
                        "series_uid": str(first.SeriesInstanceUID),
                        "series_number": number,
                        "description": str(first.get("SeriesDescription", "")),
                        "protocol_name": str(first.get("ProtocolName", "")),
                        "sop_class": str(first.SOPClassUID),
                        "instances": instances,
                    }
                )
            acquisition.fsync_dir(directory)
            proc["series"].extend(new_series)
            self.store.update_procedure(proc_id, proc["state"], _data(proc))
            self.store.enqueue(proc_id, queued)
        self.sender.wake()
        self.logger.info(
            "procedure %s acquired %d series, %d images; queued for %s",
            proc_id,
            len(new_series),
            len(queued),
            cfg.destination.ae_title,
        )
        return {"procedure": proc, "series": new_series, "queued": len(queued)}

    def complete(self, proc_id: str) -> dict[str, Any]:
        return self._finish(proc_id, COMPLETED)

    def discontinue(self, proc_id: str) -> dict[str, Any]:
        return self._finish(proc_id, DISCONTINUED)

    def _finish(self, proc_id: str, state: str) -> dict[str, Any]:
        cfg = self.get_config()
        status = state.upper()
        with self._action_lock:
            proc = self._procedure(proc_id)
            if proc["state"] != IN_PROGRESS:
                raise ApiError(409, f"procedure {proc_id} is {proc['state']}, not in progress")
            if state == COMPLETED and not proc["series"]:
                raise ApiError(409, f"procedure {proc_id} has no images; acquire first")
            error = ""
            if proc["mpps_created"]:
                error = send_mpps(self._scu(), cfg, proc, False, status, self.logger)
            elif cfg.mpps is not None:
                error = "MPPS was never created (N-CREATE failed); N-SET not sent"
                self.logger.warning("MPPS %s for %s not sent: %s", status, proc_id, error)
            proc["mpps"].append({"status": status, "ok": not error, "error": error})
            proc["state"] = state
            proc["finished_at"] = time.time()
            self.store.update_procedure(proc_id, state, _data(proc))
        self.logger.info("procedure %s %s", proc_id, state)
        if state == COMPLETED and cfg.storage_commitment.enabled:
            self.commitments.request_later(proc_id, self.sender.wake)
        return proc

    def _procedure(self, proc_id: str) -> dict[str, Any]:
        proc = self.store.procedure(proc_id)
        if proc is None:
            raise ApiError(404, f"no procedure {proc_id}")
        return proc

    def procedure_view(self, proc: dict[str, Any]) -> dict[str, Any]:
        """A procedure as the console shows it: with its send state and commitment."""
        items = self.store.queue(procedure_id=proc["id"])
        counts: dict[str, int] = {}
        for item in items:
            counts[item["state"]] = counts.get(item["state"], 0) + 1
        return {
            **proc,
            "queue": counts,
            "send_summary": send_summary(items),
            "commitments": self.store.commitments(proc["id"]),
        }


def send_summary(items: list[dict[str, Any]]) -> str:
    """'16 images sent', or '3 images failed: 0xA700 Refused: Out of resources'."""
    failed = [i for i in items if i["state"] == "failed"]
    if failed:
        reasons = sorted({i["reason"] for i in failed})
        return f"{len(failed)} images failed: {'; '.join(reasons)}"
    sent = sum(1 for i in items if i["state"] == "sent")
    waiting = len(items) - sent
    return f"{sent} images sent" + (f", {waiting} waiting" if waiting else "")


def _modality(cfg: ModalityConfig) -> str:
    return cfg.profile


def _item_key(item: dict[str, str]) -> tuple[str, ...]:
    """What identifies a worklist item (or a hand-keyed registration)."""
    return tuple(
        item.get(k, "")
        for k in (
            "patient_id",
            "accession_number",
            "requested_procedure_id",
            "scheduled_procedure_step_id",
            "study_instance_uid",
        )
    )


def _data(proc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in proc.items() if k not in ("id", "state")}
