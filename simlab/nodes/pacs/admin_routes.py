"""The PACS admin API: the vendor console that the TUI, `simlab admin`, faults and scoring use.

Health, config, reload, AE table and log are the routes every node shares
(simlab/common/standard_routes.py); these are the PACS's own: studies (list, detail, edit, split,
migrate to another storage directory, delete), patients, orders, HL7, and a dcmdump-like view of
one archived instance (`GET /instances/{sop_uid}/dump`, header only, never the pixel data;
the lines are simlab/common/dicom_dump.py's, as the viewer's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydicom.errors import InvalidDicomError

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.dicom_dump import dump_lines
from simlab.common.standard_routes import (
    ae_table_routes,
    config_routes,
    dicom_echo_routes,
    health_routes,
    json_object,
    log_routes,
)
from simlab.nodes.pacs import migration, study_edit

if TYPE_CHECKING:
    from simlab.nodes.pacs.node import PacsNode


def build_routes(node: PacsNode) -> list[Route]:
    """The routing table of the PACS admin API."""

    def health_details() -> dict[str, Any]:
        cfg = node.get_config()
        return {
            "ae_title": cfg.dicom.ae_title,
            "dicom_port": cfg.dicom.port,
            "hl7_port": cfg.hl7.port,
            "services": {"dicom": node.dicom.listening, "hl7": node.hl7.listening},
        }

    def studies(req: Request) -> list[dict[str, Any]]:
        return node.archive.index.list_studies(
            patient_id=req.query.get("patient_id"),
            accession=req.query.get("accession"),
            limit=req.query_int("limit", 100, 1, 10_000),
            offset=req.query_int("offset", 0),
        )

    def study(req: Request) -> dict[str, Any]:
        detail = node.archive.index.study_detail(req.params["uid"])
        if detail is None:
            raise ApiError(404, f"no study {req.params['uid']}")
        return detail

    def delete_study(req: Request) -> dict[str, Any]:
        uid = req.params["uid"]
        removed = node.archive.delete_study(uid)
        if not removed:
            raise ApiError(404, f"no study {uid}")
        node.logger.info("study %s deleted by admin (%d instances)", uid, removed)
        return {"deleted": uid, "instances": removed}

    def patch_study(req: Request) -> dict[str, Any]:
        return _edit(req, split=False)

    def split_study(req: Request) -> dict[str, Any]:
        return _edit(req, split=True)

    def _edit(req: Request, *, split: bool) -> dict[str, Any]:
        uid = req.params["uid"]
        body = json_object(req, required=True)
        series = body.pop("series", None) if split else None
        if split and (not isinstance(series, list) or not all(isinstance(s, str) for s in series)):
            raise ApiError(400, "series must be a list of Series Instance UIDs to split off")
        try:
            changes = study_edit.validate_changes(body)
            if not changes and not split:
                raise study_edit.StudyEditError(
                    f"nothing to change; editable: {', '.join(study_edit.EDITABLE)}"
                )
            result = study_edit.edit_study(node.archive, uid, changes, series_uids=series)
        except KeyError:
            raise ApiError(404, f"no study {uid}") from None
        except study_edit.StudyEditError as exc:
            raise ApiError(400, str(exc)) from None
        except OSError as exc:
            node.logger.error("study %s: edit failed: %s", uid, exc)
            raise ApiError(500, f"cannot rewrite the study's files: {exc}") from None
        node.logger.info(
            "study %s %s by admin (%d instances): %s%s",
            uid,
            "split" if split else "edited",
            result["instances"],
            ", ".join(f"{k}={v!r}" for k, v in changes.items()) or "no attribute changed",
            f"; new study {result['study_uid']}" if split else "",
        )
        detail = node.archive.index.study_detail(result["study_uid"])
        return {**result, "study": detail}

    def migrate(req: Request) -> dict[str, Any]:
        uid = req.params["uid"]
        storage = json_object(req, required=True).get("storage")
        if not isinstance(storage, str):
            raise ApiError(400, 'give "storage": a storage directory path ("" for the default)')
        try:
            result = migration.migrate_study(node.archive, uid, storage)
        except KeyError:
            raise ApiError(404, f"no study {uid}") from None
        except migration.MigrationError as exc:
            raise ApiError(400, str(exc)) from None
        except OSError as exc:
            node.logger.error("study %s: migration to %s failed: %s", uid, storage, exc)
            raise ApiError(500, f"migration failed: {exc}") from None
        node.logger.info(
            "study %s migrated to %s by admin (%d of %d instances moved)",
            uid,
            result["storage"],
            result["moved"],
            result["instances"],
        )
        return result

    def patients(req: Request) -> list[dict[str, Any]]:
        return node.archive.index.list_patients(limit=req.query_int("limit", 100, 1, 10_000))

    def orders(req: Request) -> list[dict[str, Any]]:
        return node.hl7.orders(limit=req.query_int("limit", 100, 1, 10_000))

    def hl7_patients(req: Request) -> list[dict[str, Any]]:
        return node.hl7.registered_patients(limit=req.query_int("limit", 100, 1, 10_000))

    def hl7_messages(req: Request) -> list[dict[str, Any]]:
        return node.hl7.message_log(limit=req.query_int("limit", 100, 1, 10_000))

    def instances_held(req: Request) -> dict[str, Any]:
        """Of the given SOP Instance UIDs, which are archived: the reconciliation a modality's
        "sent" list is checked against, whatever study the images are filed under now."""
        uids = json_object(req).get("sop_uids")
        if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids):
            raise ApiError(400, "sop_uids must be a list of SOP Instance UIDs")
        if len(uids) > 100_000:
            raise ApiError(413, "at most 100000 UIDs per request")
        held = node.archive.index.held_instances(uids)
        return {"held": sorted(held), "missing": sorted(set(uids) - held)}

    def instance_dump(req: Request) -> dict[str, Any]:
        uid = req.params["sop_uid"]
        path = node.archive.file_of(uid)
        if path is None:
            raise ApiError(404, f"no instance {uid}")
        try:
            return {"sop_uid": uid, "lines": dump_lines(path)}
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise ApiError(500, f"cannot read the file of {uid}: {exc}") from None

    def stats(_req: Request) -> dict[str, Any]:
        return node.archive.stats()

    return [
        *health_routes(node, health_details),
        *config_routes(node),
        *ae_table_routes(node),
        *dicom_echo_routes(node),
        *log_routes(node),
        Route("GET", "/studies", studies),
        Route("GET", "/studies/{uid}", study),
        Route("PATCH", "/studies/{uid}", patch_study),
        Route("POST", "/studies/{uid}/split", split_study),
        Route("POST", "/studies/{uid}/migrate", migrate),
        Route("DELETE", "/studies/{uid}", delete_study),
        Route("GET", "/patients", patients),
        Route("GET", "/orders", orders),
        Route("GET", "/hl7/messages", hl7_messages),
        Route("GET", "/hl7/patients", hl7_patients),
        Route("POST", "/instances/held", instances_held),
        Route("GET", "/instances/{sop_uid}/dump", instance_dump),
        Route("GET", "/stats", stats),
    ]
