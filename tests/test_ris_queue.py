"""The RIS's outbound HL7 queue against a real PACS process: delivery in order, retries while the
PACS is down, a refused (AR) message that dead-letters and blocks the queue until an
administrator retries, edits or deletes it, and a kill -9 of the RIS with messages pending that
still delivers each of them exactly once (checked in the PACS's own message log)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from simlab.common.hl7_messages import read_header
from tests.conftest import RunningNode, start_pacs
from tests.ris_fixtures import (
    MppsScu,
    RunningRis,
    create_attrs,
    order,
    register,
    start_ris,
    wait_for,
)


def queue(ris: RunningRis, state: str | None = None) -> list[dict]:
    return ris.admin.get("/queue", state=state)


def entry(ris: RunningRis, entry_id: int) -> dict:
    return ris.admin.get(f"/queue/{entry_id}")


def all_sent(ris: RunningRis, count: int) -> list[dict] | None:
    rows = queue(ris)
    return rows if len(rows) == count and all(r["state"] == "sent" for r in rows) else None


def pacs_control_ids(pacs: RunningNode) -> Counter:
    return Counter(m["control_id"] for m in pacs.admin.get("/hl7/messages", limit=1000))


def start_pair(tmp_path: Path, **ris_overrides) -> tuple[RunningNode, RunningRis]:
    pacs = start_pacs(tmp_path / "pacs")
    try:
        ris = start_ris(tmp_path / "ris", pacs_hl7_port=pacs.hl7_port, **ris_overrides)
    except BaseException:
        pacs.stop()
        raise
    return pacs, ris


def test_new_patient_and_order_reach_the_pacs_in_order(tmp_path: Path):
    pacs, ris = start_pair(tmp_path)
    try:
        register(ris, "Q1", "Weiß^Renée")
        row = order(ris, "Q1")
        sent = wait_for(lambda: all_sent(ris, 2), "both messages delivered")
        assert [r["type"] for r in sent] == ["ADT^A04", "ORM^O01 NW"]
        assert [r["ack_code"] for r in sent] == ["AA", "AA"]
        pacs_orders = wait_for(lambda: pacs.admin.get("/orders"), "the order on the PACS")
        assert row["accession"] in [o["accession"] for o in pacs_orders]
        patients = pacs.admin.get("/hl7/patients")
        assert any(p["patient_id"] == "Q1" and p["name"] == "Weiß^Renée" for p in patients)
        ids = pacs_control_ids(pacs)
        assert ids == Counter({r["control_id"]: 1 for r in sent})
        lines = "\n".join(ris.admin.get("/log", contains="HL7 out")["lines"])
        assert "ACK AA" in lines

        # The modality performs it: MPPS IN PROGRESS then COMPLETED reach the PACS as ORM SC.
        scu = MppsScu(ris)
        try:
            uid = "2.25.99.1"
            assert scu.create(create_attrs(row), uid)[0] == 0x0000
            end = {
                "PerformedProcedureStepEndDate": "20261123",
                "PerformedProcedureStepEndTime": "1000",
            }
            assert scu.set(uid, PerformedProcedureStepStatus="COMPLETED", **end)[0] == 0x0000
        finally:
            scu.close()
        sent = wait_for(lambda: all_sent(ris, 4), "the two status updates delivered")
        assert [r["type"] for r in sent[2:]] == ["ORM^O01 SC", "ORM^O01 SC"]
        wait_for(
            lambda: any(
                o["accession"] == row["accession"] and o["status"] == "COMPLETED"
                for o in pacs.admin.get("/orders")
            ),
            "the order COMPLETED on the PACS",
        )
    finally:
        ris.stop()
        pacs.stop()


def test_pacs_down_messages_are_retried_then_delivered(tmp_path: Path):
    pacs, ris = start_pair(tmp_path)
    try:
        pacs.stop()
        register(ris, "Q2", "Down^Time")
        head = wait_for(
            lambda: next((r for r in queue(ris, "pending") if r["attempts"] >= 2), None),
            "two failed attempts",
        )
        assert "refused" in head["last_error"]
        assert "retry in" in "\n".join(ris.admin.get("/log", contains="attempt")["lines"])
        pacs.start()
        sent = wait_for(lambda: all_sent(ris, 1), "delivery once the PACS is back")
        assert sent[0]["attempts"] >= 3
        assert pacs_control_ids(pacs)[sent[0]["control_id"]] == 1
    finally:
        ris.stop()
        pacs.stop()


def test_refused_message_dead_letters_blocks_and_is_fixed_by_admin(tmp_path: Path):
    pacs, ris = start_pair(tmp_path)
    try:
        ris.admin.patch(
            "/config", {"destinations": [{"port": pacs.hl7_port, "application": "PACS_OLD"}]}
        )
        register(ris, "Q3", "Stuck^Queue")
        dead = wait_for(lambda: queue(ris, "dead"), "the refused message dead-lettered")[0]
        assert (dead["ack_code"], dead["ack_error_code"]) == ("AR", 103)
        assert "MSH-5" in dead["ack_text"]
        acc = order(ris, "Q3")["accession"]  # queued behind the dead message
        wait_for(
            lambda: ris.admin.get("/log", contains="(1 waiting behind it)")["lines"],
            "the sender to report the blocked queue",
        )
        assert [r["state"] for r in queue(ris)] == ["dead", "pending"]
        assert queue(ris)[1]["attempts"] == 0

        # The interface is fixed for new messages; the queued ones still say PACS_OLD.
        ris.admin.patch(
            "/config", {"destinations": [{"port": pacs.hl7_port, "application": "SIMLAB_PACS"}]}
        )
        # Edit the dead one: it goes, then the next (old address) is refused in turn.
        fixed = dead["message"].replace("|PACS_OLD|", "|SIMLAB_PACS|")
        ris.admin.put(f"/queue/{dead['id']}", {"message": fixed})
        wait_for(lambda: entry(ris, dead["id"])["state"] == "sent", "the edited message sent")
        second = wait_for(
            lambda: next((r for r in queue(ris, "dead") if r["id"] != dead["id"]), None),
            "the order message refused",
        )
        # Retry sends the same message again: refused again, one more attempt recorded.
        ris.admin.post(f"/queue/{second['id']}/retry")
        wait_for(
            lambda: len(ris.admin.get("/log", contains=f"#{second['id']} ORM")["lines"]) >= 3,
            "the retried message refused again",
        )
        assert entry(ris, second["id"])["state"] == "dead"
        # Not blocking any more: a new message overtakes the dead one.
        ris.admin.patch("/config", {"queue": {"block_on_error": False}})
        register(ris, "Q4", "Next^Inline")
        wait_for(
            lambda: any(r["summary"] == "patient Q4" for r in queue(ris, "sent")),
            "the new message sent past the dead one",
        )
        ris.admin.delete(f"/queue/{second['id']}")
        assert queue(ris, "dead") == []
        assert acc not in [o["accession"] for o in pacs.admin.get("/orders")]
        ids = pacs_control_ids(pacs)
        assert ids[dead["control_id"]] == 2  # refused once, accepted once after the edit
        assert ids[second["control_id"]] == 2  # refused twice
        assert entry(ris, second["id"])["state"] == "deleted"  # kept for the record
        log = "\n".join(ris.admin.get("/log", contains="dead letter")["lines"])
        assert "ACK AR 103" in log and "queue is blocked" in log
    finally:
        ris.stop()
        pacs.stop()


def test_kill_9_with_pending_messages_delivers_each_exactly_once(tmp_path: Path):
    pacs, ris = start_pair(tmp_path)
    try:
        pacs.stop()
        register(ris, "Q5", "Crash^Test")
        for day in ("20261201", "20261202", "20261203"):
            order(ris, "Q5", start_date=day)
        wait_for(lambda: queue(ris, "pending")[0]["attempts"] >= 1, "a failed attempt")
        expected = [r["control_id"] for r in queue(ris)]
        assert len(expected) == 4 and len(set(expected)) == 4
        ris.kill9()
        pacs.start()
        ris.start()
        sent = wait_for(lambda: all_sent(ris, 4), "all four delivered after the restart")
        assert [r["control_id"] for r in sent] == expected
        ids = pacs_control_ids(pacs)
        assert {c: ids[c] for c in expected} == dict.fromkeys(expected, 1)
        assert all(n == 1 for n in ids.values())
        # Control IDs keep counting after the restart: never reused.
        register(ris, "Q6", "After^Restart")
        newest = wait_for(lambda: all_sent(ris, 5), "the fifth message")[-1]
        assert newest["control_id"] not in expected
        assert read_header(newest["message"]).control_id == newest["control_id"]
    finally:
        ris.stop()
        pacs.stop()
