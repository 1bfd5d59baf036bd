"""The PACS admin API: the vendor console that the TUI, `simlab admin`, faults and scoring use.

Health, config, reload, AE table and log are the routes every node shares
(simlab/common/standard_routes.py); these are the PACS's own: studies, patients, orders, HL7.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simlab.common.admin_server import ApiError, Request, Route
from simlab.common.standard_routes import (
    ae_table_routes,
    config_routes,
    health_routes,
    log_routes,
)

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

    def patients(req: Request) -> list[dict[str, Any]]:
        return node.archive.index.list_patients(limit=req.query_int("limit", 100, 1, 10_000))

    def orders(req: Request) -> list[dict[str, Any]]:
        return node.hl7.orders(limit=req.query_int("limit", 100, 1, 10_000))

    def hl7_patients(req: Request) -> list[dict[str, Any]]:
        return node.hl7.registered_patients(limit=req.query_int("limit", 100, 1, 10_000))

    def hl7_messages(req: Request) -> list[dict[str, Any]]:
        return node.hl7.message_log(limit=req.query_int("limit", 100, 1, 10_000))

    def stats(_req: Request) -> dict[str, Any]:
        return node.archive.stats()

    return [
        *health_routes(node, health_details),
        *config_routes(node),
        *ae_table_routes(node),
        *log_routes(node),
        Route("GET", "/studies", studies),
        Route("GET", "/studies/{uid}", study),
        Route("DELETE", "/studies/{uid}", delete_study),
        Route("GET", "/patients", patients),
        Route("GET", "/orders", orders),
        Route("GET", "/hl7/messages", hl7_messages),
        Route("GET", "/hl7/patients", hl7_patients),
        Route("GET", "/stats", stats),
    ]
