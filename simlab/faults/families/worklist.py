"""Worklist and MPPS faults: the modality and the RIS stop agreeing on what is scheduled.

A Modality Worklist query (IHE RAD-5, PS3.4 K.6) matches on Scheduled Station AE Title
(0040,0001) and Scheduled Procedure Step Start Date (0040,0002) among other keys; a station AE
or date that does not match what the RIS scheduled gives a successful but **empty** worklist,
not an error. MPPS (RAD-6/7, PS3.4 F.7) is how the RIS learns a step started and ended; when it
is never sent the order stays SCHEDULED (and on the worklist) however many images are taken.

In a hospital all of these end the same way: the technologist keys the patient by hand, and the
typos and missing accession numbers become data faults at the PACS. Each fault here changes a
config the way a field engineer or a RIS administrator would, or cancels an order through the
RIS console, so the query and its empty answer are real.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Literal

from simlab.faults.base import (
    Fault,
    FaultContext,
    FaultError,
    NodeParams,
    RevertState,
    register,
)
from simlab.runtime.ports import free_ports


class ModalityParams(NodeParams):
    """A fault on one modality (default: the CT) and its worklist provider."""

    node: str = "ct-1"
    ris: str = "ris"
    """The RIS node (the Modality Worklist and MPPS SCP)."""


def _unused_port(ctx: FaultContext) -> int:
    taken = {
        p for n in ctx.lab.manifest.nodes for p in (n.admin_port, n.dicom_port, n.hl7_port) if p
    }
    return free_ports(1, avoid=taken)[0]


# ---------------------------------------------------------------------------------------------
# Empty worklist: Scheduled Station AE or date mismatch
# ---------------------------------------------------------------------------------------------


class StationMismatchParams(ModalityParams):
    side: Literal["modality", "ris"] = "modality"
    """`modality`: the modality queries for another station AE; `ris`: the RIS schedules this
    modality's procedures under another station AE (its modality_stations map; orders placed
    from then on, as in a hospital: steps already scheduled keep their station)."""
    station_ae: str | None = None
    """The wrong Scheduled Station AE title; None uses the modality's Station Name (CT01 for
    CT_1: the classic confusion of station name and AE title)."""


@register
class MwlStationMismatch(Fault):
    kind = "mwl_station_mismatch"
    family = "worklist"
    title = "Worklist empty: Scheduled Station AE title mismatch"
    symptom = (
        "The modality's worklist query succeeds (C-FIND status 0x0000) with 0 items while the "
        "RIS has procedures scheduled for it; the RIS log shows the query's station key "
        "('MWL C-FIND from CT_1: keys ...; 0 match(es)'). Technologists key patients by hand."
    )
    root_cause = (
        "The Scheduled Station AE title in the modality's query and in the RIS's schedule differ "
        "(e.g. CT01, the station name, against CT_1, the AE title): either the modality's "
        "worklist settings or the RIS's modality-to-station map was changed."
    )
    Params = StationMismatchParams

    def nodes(self) -> list[str]:
        p = self.params
        assert isinstance(p, StationMismatchParams)
        return [p.node if p.side == "modality" else p.ris]

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, StationMismatchParams)
        modality = ctx.config(p.node)
        wrong = p.station_ae or str(modality.get("station_name") or "WRONG_AE")
        if p.side == "modality":
            inverse = ctx.patch_config(p.node, {"worklist_query": {"station_ae_title": wrong}})
            return {"node": p.node, "inverse": inverse}
        profile = str(modality.get("profile") or "CT")
        inverse = ctx.patch_config(p.ris, {"modality_stations": {profile: wrong}})
        return {"node": p.ris, "inverse": inverse}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(state["node"], state["inverse"])


class DateFilterParams(ModalityParams):
    date: str | None = None
    """The Scheduled Procedure Step Start Date the modality queries (DICOM DA or range);
    None: yesterday (a console whose date is a day behind, or a fixed date left in a test)."""


@register
class MwlDateFilter(Fault):
    kind = "mwl_date_filter"
    family = "worklist"
    title = "Worklist empty: the modality queries a wrong date"
    symptom = (
        "The worklist query succeeds with 0 items although today's procedures are scheduled; "
        "the modality's log shows the date key it sent (e.g. 'MWL query [date=20261122, ...]: "
        "0 items') and the RIS log the same key."
    )
    root_cause = (
        "The modality's worklist query sends a fixed or wrong Scheduled Procedure Step Start "
        "Date (0040,0002) instead of today's."
    )
    Params = DateFilterParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, DateFilterParams)
        wrong = p.date or (date.today() - timedelta(days=1)).strftime("%Y%m%d")
        inverse = ctx.patch_config(p.node, {"worklist_query": {"date": wrong}})
        return {"inverse": inverse, "date": wrong}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(self.params.node, state["inverse"])  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# MPPS never sent
# ---------------------------------------------------------------------------------------------


class MppsNotSentParams(ModalityParams):
    mode: Literal["disabled", "wrong_port"] = "disabled"
    """`disabled`: no MPPS destination configured; `wrong_port`: the MPPS SCP's port is wrong
    (connection refused at every N-CREATE)."""


@register
class MppsNotSent(Fault):
    kind = "mpps_not_sent"
    family = "worklist"
    title = "The modality never sends MPPS"
    symptom = (
        "Procedures started and completed at the modality stay SCHEDULED at the RIS (no MPPS "
        "instance in GET /mpps) and stay on the worklist; the modality's procedure shows the "
        "MPPS error ('no MPPS destination configured' or the refused connection)."
    )
    root_cause = (
        "The modality's MPPS destination was removed or points at a wrong port (e.g. after a "
        "service visit), so N-CREATE/N-SET (RAD-6/7) never reach the RIS."
    )
    Params = MppsNotSentParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, MppsNotSentParams)
        if p.mode == "disabled":
            inverse = ctx.patch_config(p.node, {"mpps": None})
        else:
            if ctx.config(p.node).get("mpps") is None:
                raise FaultError(f"{p.node} has no MPPS destination to misconfigure")
            inverse = ctx.patch_config(p.node, {"mpps": {"port": _unused_port(ctx)}})
        return {"inverse": inverse}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        ctx.restore_config(self.params.node, state["inverse"])  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# The order is not on the schedule
# ---------------------------------------------------------------------------------------------


class OrderNotScheduledParams(NodeParams):
    node: str = "ris"
    accession: str | None = None
    """The order to take off the schedule; None picks one of the SCHEDULED orders (seeded)."""
    modality: str | None = None
    """When picking: only orders of this modality (e.g. CT)."""


_REORDER_FIELDS = (
    "patient_id",
    "modality",
    "station_ae",
    "start_date",
    "start_time",
    "requested_procedure_id",
    "requested_procedure_description",
    "sps_id",
    "sps_description",
    "study_uid",
    "performing_physician",
    "referring_physician",
    "procedure_code",
    "procedure_scheme",
    "procedure_meaning",
    "placer_order",
)


@register
class OrderNotScheduled(Fault):
    kind = "order_not_scheduled"
    family = "worklist"
    title = "An order is not on the schedule (cancelled at the RIS)"
    symptom = (
        "The patient arrives but their procedure is missing from the modality's worklist; the "
        "RIS shows the order CANCELLED (and the PACS got ORM^O01 CA), so the technologist keys "
        "the patient by hand."
    )
    root_cause = (
        "The order was cancelled at the RIS (a clerk cancelled the wrong order, or a duplicate "
        "cleanup took the real one), so no Scheduled Procedure Step exists for it."
    )
    Params = OrderNotScheduledParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, OrderNotScheduledParams)
        client = ctx.client(p.node)
        if p.accession:
            order = client.get(f"/orders/{p.accession}")
            if order["status"] != "SCHEDULED":
                raise FaultError(f"order {p.accession} is {order['status']}, not SCHEDULED")
        else:
            candidates = [
                o
                for o in client.get("/orders", status="SCHEDULED")
                if not p.modality or o["modality"] == p.modality.upper()
            ]
            if not candidates:
                raise FaultError(f"{p.node} has no SCHEDULED order to take off the schedule")
            order = ctx.rng.choice(sorted(candidates, key=lambda o: o["accession"]))
        client.post(f"/orders/{order['accession']}/cancel", {})
        return {"order": {k: order.get(k) for k in ("accession", *_REORDER_FIELDS)}}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        """Schedule the procedure again (a new accession: the cancelled one stays used), unless
        it is already back on the schedule under the same Study Instance UID."""
        p = self.params
        assert isinstance(p, OrderNotScheduledParams)
        client = ctx.client(p.node)
        old: dict[str, Any] = state["order"]
        again = [
            o
            for o in client.get("/orders", patient_id=old["patient_id"])
            if o["study_uid"] == old["study_uid"] and o["status"] != "CANCELLED"
        ]
        if again:
            return
        client.post("/orders", {k: old[k] for k in _REORDER_FIELDS if old.get(k)})
