"""HL7 faults: the RIS→PACS interface (IHE RAD-1/4/12/13 over MLLP) going wrong.

The RIS queues every ADT and ORM for the PACS and sends them in order, one at a time, waiting
for each ACK (docs/ris.md). Real interface failures live in that path, and so do these faults:

* the destination's route filter drops A08 or A40 (an interface-engine misconfiguration): the
  PACS never hears of the update or merge, and its demographics drift from the RIS's;
* a transform rule rewrites OBR-18: the PACS files the order under an accession no study has;
* MSH-5/MSH-6 name another system: the PACS answers AR with ERR-3 103 (HL7 table 0357, table
  value not found) and the queue dead-letters and blocks;
* the sender's MLLP framing is broken (HL7 v2.5.1 Appendix C): the PACS logs the framing error,
  sends no ACK, and the RIS logs "timeout waiting for ACK" and retries;
* a poison message at the head of the queue: every message behind it waits (head-of-line
  blocking) until an administrator deletes or edits it;
* a wrong destination port: connection refused, retries with backoff, the queue piles up.

Every fault acts through the RIS admin API (its config and its queue), never on the PACS.
Reverting restores the config and sends what the fault held back again (retry or edit the
queued messages it left dead or pending), so the queue drains.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from simlab.client.admin import AdminApiError
from simlab.faults.base import (
    Fault,
    FaultContext,
    FaultError,
    FaultParams,
    RevertState,
    register,
)
from simlab.runtime.ports import free_ports

ALL_MESSAGE_TYPES = ("ADT^A01", "ADT^A04", "ADT^A08", "ADT^A40", "ORM^O01")
"""What the RIS sends (docs/ris.md), spelled the way a route filter lists them."""
_ABSENT = "__absent__"
"""Marks a destination field that was not set before the fault (its default applied)."""


class DestinationParams(FaultParams):
    """A fault on one outbound HL7 destination of the RIS."""

    node: str = "ris"
    """The RIS node."""
    destination: str = "pacs"
    """The destination's queue name in the RIS config."""


# ---------------------------------------------------------------------------------------------
# Helpers: one destination's fields, and the queue entries a fault held back
# ---------------------------------------------------------------------------------------------


def _destinations(ctx: FaultContext, node: str) -> list[dict[str, Any]]:
    return list(ctx.config(node).get("destinations") or [])


def _destination(ctx: FaultContext, node: str, name: str) -> dict[str, Any]:
    found = next((d for d in _destinations(ctx, node) if d.get("name") == name), None)
    if found is None:
        raise FaultError(f"{node} has no HL7 destination {name!r}")
    return found


def patch_destination(
    ctx: FaultContext, node: str, name: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change some fields of one destination; return their old values (for restore).

    `destinations` is a list, which a merge patch replaces whole, so the current list is read
    and sent back with only this entry's fields changed.
    """
    old_dest = _destination(ctx, node, name)
    old = {k: old_dest.get(k, _ABSENT) for k in changes}
    rows = [{**d, **changes} if d.get("name") == name else d for d in _destinations(ctx, node)]
    ctx.client(node).patch("/config", {"destinations": rows})
    return old


def restore_destination(ctx: FaultContext, node: str, name: str, old: dict[str, Any]) -> None:
    """Put back the fields `patch_destination` changed (a destination since removed is left)."""
    rows = []
    for dest in _destinations(ctx, node):
        if dest.get("name") == name:
            dest = {**dest}
            for key, value in old.items():
                if value == _ABSENT:
                    dest.pop(key, None)
                else:
                    dest[key] = value
        rows.append(dest)
    ctx.client(node).patch("/config", {"destinations": rows})


def queue_entries(ctx: FaultContext, node: str, destination: str, state: str) -> list[dict]:
    return ctx.client(node).get("/queue", state=state, destination=destination)


def resend_held(ctx: FaultContext, node: str, destination: str, errors: tuple[str, ...]) -> None:
    """Retry now the destination's pending messages and its dead ones whose last error is one
    of `errors` (what this fault caused), so the queue drains without waiting for backoff."""
    client = ctx.client(node)
    for entry in queue_entries(ctx, node, destination, "dead"):
        if any(e in (entry.get("last_error") or "") for e in errors):
            client.post(f"/queue/{entry['id']}/retry", {})
    for entry in queue_entries(ctx, node, destination, "pending"):
        if entry.get("attempts"):
            client.post(f"/queue/{entry['id']}/retry", {})


def unused_port(ctx: FaultContext) -> int:
    """A loopback port no node of the lab listens on (nothing answers: connection refused)."""
    taken = {
        p for n in ctx.lab.manifest.nodes for p in (n.admin_port, n.dicom_port, n.hl7_port) if p
    }
    return free_ports(1, avoid=taken)[0]


# ---------------------------------------------------------------------------------------------
# Route filter: A08 / A40 never leave the RIS
# ---------------------------------------------------------------------------------------------


class _RouteFilterFault(Fault):
    """The destination's route filter lists the message types to send and forgets one."""

    family = "hl7"
    dropped: ClassVar[str]
    Params = DestinationParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, DestinationParams)
        current = _destination(ctx, p.node, p.destination).get("message_types")
        listed = ALL_MESSAGE_TYPES if current is None else _expand(current)
        kept = [t for t in listed if t != self.dropped]
        old = patch_destination(ctx, p.node, p.destination, {"message_types": kept})
        return {"old": old}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, DestinationParams)
        restore_destination(ctx, p.node, p.destination, state["old"])


def _expand(types: list[str]) -> list[str]:
    """A filter with whole types (`ADT`) spelled out as the events the RIS sends."""
    out: list[str] = []
    for item in types:
        out += (
            [t for t in ALL_MESSAGE_TYPES if t.split("^")[0] == item] if "^" not in item else [item]
        )
    return out


@register
class AdtUpdateNotApplied(_RouteFilterFault):
    kind = "adt_update_not_applied"
    title = "Patient updates (ADT^A08) never reach the PACS"
    symptom = (
        "A demographics change made at the RIS (name, birth date, sex) does not show at the PACS: "
        "the RIS queue keeps the ADT^A08 as 'filtered' (log: 'excluded by the destination's route "
        "filter'), the PACS's /hl7/messages has no A08, and RIS and PACS disagree on the patient."
    )
    root_cause = (
        "The RIS's outbound route to the PACS filters message types and ADT^A08 is missing from "
        "the list (an interface-engine channel set up or edited without it)."
    )
    dropped = "ADT^A08"


@register
class MergeNotSent(_RouteFilterFault):
    kind = "merge_not_sent"
    title = "Patient merges (ADT^A40) never reach the PACS"
    symptom = (
        "A merge done at the RIS does not happen at the PACS: the prior patient ID stays active "
        "there with its studies (a split patient record); the RIS queue keeps the ADT^A40 as "
        "'filtered' and the PACS's /hl7/messages has no A40."
    )
    root_cause = (
        "The RIS's outbound route to the PACS filters message types and ADT^A40 is missing from "
        "the list."
    )
    dropped = "ADT^A40"


# ---------------------------------------------------------------------------------------------
# Transform rule: the ORM carries another accession than the worklist
# ---------------------------------------------------------------------------------------------


class OrmWrongAccessionParams(DestinationParams):
    prefix: str = "RAD"
    """What the transform rule puts before OBR-18 (a rule meant for another receiver)."""


@register
class OrmWrongAccession(Fault):
    kind = "orm_wrong_accession"
    family = "hl7"
    title = "Orders reach the PACS with a wrong accession number"
    symptom = (
        "The PACS lists each new order under an accession the RIS never issued (e.g. "
        "RADACC000007 for ACC000007). The modality takes the right accession from the worklist, "
        "so its study arrives at the PACS matching no order: an unreconciled study."
    )
    root_cause = (
        "A transform rule on the RIS→PACS interface prefixes OBR-18 (accession number) of every "
        "outbound message."
    )
    Params = OrmWrongAccessionParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, OrmWrongAccessionParams)
        dest = _destination(ctx, p.node, p.destination)
        rule = {"field": "OBR-18", "prefix": p.prefix, "suffix": ""}
        rules = [*(dest.get("transforms") or []), rule]
        old = patch_destination(ctx, p.node, p.destination, {"transforms": rules})
        return {"old": old}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, OrmWrongAccessionParams)
        restore_destination(ctx, p.node, p.destination, state["old"])


# ---------------------------------------------------------------------------------------------
# MSH-5 / MSH-6: the PACS rejects every message
# ---------------------------------------------------------------------------------------------


class WrongReceivingApplicationParams(DestinationParams):
    application: str = "PACS_ARCHIVE"
    """MSH-5 the RIS now addresses (the PACS answers to SIMLAB_PACS)."""
    facility: str | None = None
    """MSH-6 the RIS now addresses; None leaves the facility as it is."""


@register
class WrongReceivingApplication(Fault):
    kind = "wrong_receiving_application"
    family = "hl7"
    title = "The RIS addresses its HL7 to a wrong receiving application (MSH-5/MSH-6)"
    symptom = (
        "The PACS answers every message with MSA-1 AR and ERR-3 103 (table value not found: "
        "'MSH-5 ... is not this system'); the RIS dead-letters the first one, keeps the AR in "
        "the queue entry and blocks everything behind it."
    )
    root_cause = (
        "The RIS's destination for the PACS names another receiving application/facility (MSH-5/"
        "MSH-6), e.g. after the PACS was renamed or a channel was copied from another site."
    )
    Params = WrongReceivingApplicationParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, WrongReceivingApplicationParams)
        changes: dict[str, Any] = {"application": p.application}
        if p.facility is not None:
            changes["facility"] = p.facility
        old = patch_destination(ctx, p.node, p.destination, changes)
        return {"old": old}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, WrongReceivingApplicationParams)
        old = state["old"]
        restore_destination(ctx, p.node, p.destination, old)
        # Messages queued meanwhile carry the wrong MSH-5/6 in their text: edit them back.
        # Newest first: the dead head blocks the queue until it is edited last, so no message
        # behind it leaves with the wrong address meanwhile.
        dest = _destination(ctx, p.node, p.destination)
        client = ctx.client(p.node)
        held = [
            e
            for e in client.get("/queue", destination=p.destination)
            if e["state"] in ("dead", "pending")
        ]
        for entry in sorted(held, key=lambda e: -int(e["id"])):
            fixed = _readdress(entry["message"], p, dest)
            if fixed != entry["message"]:
                client.put(f"/queue/{entry['id']}", {"message": fixed})


def _readdress(message: str, p: WrongReceivingApplicationParams, dest: dict[str, Any]) -> str:
    """The message with MSH-5/6 set back to the destination's, if it carries the fault's."""
    segments = message.split("\r")
    if not segments or not segments[0].startswith("MSH"):
        return message
    sep = segments[0][3]
    fields = segments[0].split(sep)
    # fields[0] is "MSH" and fields[1] the encoding characters (MSH-2), so MSH-n is fields[n - 1].
    if len(fields) < 6 or fields[4] != p.application:
        return message
    fields[4] = dest.get("application", "SIMLAB_PACS")
    if p.facility is not None and fields[5] == p.facility:
        fields[5] = dest.get("facility", "RADIOLOGY")
    segments[0] = sep.join(fields)
    return "\r".join(segments)


# ---------------------------------------------------------------------------------------------
# Transport: broken framing, wrong port
# ---------------------------------------------------------------------------------------------


class BrokenFramingParams(DestinationParams):
    framing: Literal["no_end_block", "no_start_block", "lf_end"] = "no_end_block"
    """How the frame is broken: trailer 0x1C 0x0D missing (the PACS waits, the RIS times out),
    start block 0x0B missing, or 0x1C followed by LF (the PACS drops the connection)."""


@register
class BrokenMllpFraming(Fault):
    kind = "broken_mllp_framing"
    family = "hl7"
    title = "The RIS's HL7 sender breaks MLLP framing"
    symptom = (
        "No message is acknowledged: the PACS logs the framing error ('no end block 0x1C 0x0D' / "
        "'before the start block 0x0B') and closes the connection without an ACK; the RIS logs "
        "'timeout waiting for ACK' (or 'closed ... before the ACK') and retries with backoff; "
        "the queue piles up."
    )
    root_cause = (
        "The RIS's outbound interface to the PACS is set to a non-standard framing (HL7 v2.5.1 "
        "Appendix C wants 0x0B message 0x1C 0x0D), e.g. after an interface-engine upgrade."
    )
    Params = BrokenFramingParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, BrokenFramingParams)
        old = patch_destination(ctx, p.node, p.destination, {"framing": p.framing})
        return {"old": old}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, BrokenFramingParams)
        restore_destination(ctx, p.node, p.destination, state["old"])
        resend_held(ctx, p.node, p.destination, ("timeout waiting for ACK", "before the ACK"))


class WrongPortParams(DestinationParams):
    port: int | None = None
    """The port the RIS now sends to; None picks a loopback port nothing listens on."""


@register
class Hl7DestinationWrongPort(Fault):
    kind = "hl7_destination_wrong_port"
    family = "hl7"
    title = "The RIS sends its HL7 to a wrong port"
    symptom = (
        "Every attempt fails with 'connection refused by 127.0.0.1:<port> (no HL7 listener on "
        "this port?)'; the RIS retries with backoff and the queue to the PACS piles up (pending, "
        "attempts growing); the PACS receives nothing."
    )
    root_cause = (
        "The RIS's destination for the PACS has a wrong MLLP port (a typo, or the PACS's HL7 "
        "listener moved)."
    )
    Params = WrongPortParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, WrongPortParams)
        port = p.port if p.port is not None else unused_port(ctx)
        old = patch_destination(ctx, p.node, p.destination, {"port": port})
        return {"old": old, "port": port}

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, WrongPortParams)
        restore_destination(ctx, p.node, p.destination, state["old"])
        resend_held(ctx, p.node, p.destination, ("connection refused", "cannot connect"))


# ---------------------------------------------------------------------------------------------
# Poison message: head-of-line blocking
# ---------------------------------------------------------------------------------------------

_CONTROL_ID_TRIES = 20
PoisonDefect = Literal["missing_patient_id", "unsupported_event", "bad_version"]


class PoisonMessageParams(DestinationParams):
    defect: PoisonDefect = "missing_patient_id"
    """What is wrong with it: PID-3 empty (PACS: AE 101), event ADT^A99 (AR 201), or
    MSH-12 version 2.9 (AR 203)."""


@register
class PoisonMessage(Fault):
    kind = "poison_message"
    family = "hl7"
    title = "A poison message blocks the RIS's outbound queue"
    symptom = (
        "The PACS refuses one message (default: ADT^A08 with PID-3 empty, MSA-1 AE, ERR-3 101 "
        "required field missing at PID^1^3); the RIS dead-letters it and, with block_on_error, "
        "sends nothing behind it: 'HL7 out queue to pacs blocked by dead message #n (k waiting "
        "behind it)'. Deleting or correcting that one message lets the rest flow."
    )
    root_cause = (
        "A malformed message (keyed by hand or produced by an upstream system's bug) sits at the "
        "head of an ordered queue that blocks on error, as real interface engines do."
    )
    Params = PoisonMessageParams

    def inject(self, ctx: FaultContext) -> RevertState:
        p = self.params
        assert isinstance(p, PoisonMessageParams)
        cfg = ctx.config(p.node)
        dest = _destination(ctx, p.node, p.destination)
        for _ in range(_CONTROL_ID_TRIES):
            control_id = f"POISON{ctx.rng.randrange(10**8):08d}"
            text = poison_text(p.defect, cfg, dest, control_id, ctx.rng.randrange(10**4))
            try:
                entry = ctx.client(p.node).post(
                    "/queue", {"destination": p.destination, "message": text}
                )
            except AdminApiError as exc:
                if exc.status == 409:  # MSH-10 used by an earlier poison message: draw again
                    continue
                raise
            return {"entry": entry["id"], "control_id": control_id}
        raise FaultError(f"{p.node}: no unused MSH-10 for the poison message")

    def revert(self, ctx: FaultContext, state: RevertState) -> None:
        p = self.params
        assert isinstance(p, PoisonMessageParams)
        client = ctx.client(p.node)
        entry = client.get(f"/queue/{state['entry']}")
        if entry["state"] in ("pending", "dead") and entry["control_id"] == state["control_id"]:
            client.delete(f"/queue/{state['entry']}")


def poison_text(
    defect: PoisonDefect, cfg: dict[str, Any], dest: dict[str, Any], control_id: str, n: int
) -> str:
    """An ADT^A08 from the RIS to the destination, broken as `defect` says."""
    hl7 = cfg.get("hl7") or {}
    event, version, patient_id = "A08", "2.5.1", f"PSN{n:04d}"
    if defect == "missing_patient_id":
        patient_id = ""
    elif defect == "unsupported_event":
        event = "A99"
    else:
        version = "2.9"
    pid3 = f"{patient_id}^^^^MR" if patient_id else ""
    segments = [
        f"MSH|^~\\&|{hl7.get('application', 'SIMLAB_RIS')}|{hl7.get('facility', 'RADIOLOGY')}"
        f"|{dest.get('application', 'SIMLAB_PACS')}|{dest.get('facility', 'RADIOLOGY')}"
        f"|20260101120000||ADT^{event}^ADT_A01|{control_id}|P|{version}|||AL|NE||UNICODE UTF-8",
        f"EVN|{event}|20260101120000",
        f"PID|1||{pid3}||POISON^PATIENT||19700101|O",
        "PV1|1|O",
    ]
    return "\r".join(segments) + "\r"
