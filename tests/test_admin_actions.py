"""Admin actions against a running department: each works, shows the real codes, is journalled.

Every test leaves the lab as it found it (the department is shared by the module).
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from simlab.client import dicom_scu
from simlab.runtime.lab import Lab
from simlab.workflow.actions import ACTIONS, ActionError, Actions, run_action
from simlab.workflow.actions.dicom import received_dir, received_files
from tests.dicom_files import Ids, storescu, study_files
from tests.lab_fixtures import fault_lab  # noqa: F401 (fixture)
from tests.polling import poll

ACTOR = "alice"


@pytest.fixture
def actions(fault_lab: Lab) -> Actions:  # noqa: F811
    return Actions(fault_lab, ACTOR)


def journal(lab: Lab, name: str) -> dict[str, Any]:
    """The newest journal entry of an action."""
    events = [e for e in lab.events.read() if e["kind"] == "action" and e["action"] == name]
    assert events, f"no {name} in the journal"
    return events[-1]


def test_registry_has_every_action_of_the_toolbox() -> None:
    wanted = {
        "config.get", "config.patch", "config.set", "ae.list", "ae.put", "ae.delete",
        "node.restart", "node.start", "node.stop", "node.status", "dicom.echo", "dicom.find",
        "dicom.move", "dicom.store", "studies.list", "study.delete", "study.edit",
        "queue.list", "queue.retry", "queue.delete", "queue.edit", "hl7.send",
        "worklist.query", "api",
    }  # fmt: skip
    assert wanted <= set(ACTIONS)


def test_echo_from_admin_ws_success_and_real_rejections(actions: Actions, fault_lab: Lab) -> None:  # noqa: F811
    ok = actions.dicom_echo(to="pacs")
    assert ok.ok and ok.data["status"] == 0, ok.text
    event = journal(fault_lab, "dicom.echo")
    assert event["actor"] == ACTOR and event["ok"] is True
    assert event["args"]["to"] == "pacs" and event["args"]["from"] == "ADMIN_WS"

    wrong_called = actions.dicom_echo(to="pacs", ae_title="PACS_MAIN")
    assert not wrong_called.ok
    assert "rejected 1/1/7 (called AE title not recognised)" in wrong_called.text
    assert journal(fault_lab, "dicom.echo")["ok"] is False

    unknown_calling = actions.dicom_echo(to="pacs", **{"from": "STRANGER"})
    assert "rejected 1/1/3 (calling AE title not recognised)" in unknown_calling.text

    refused = actions.dicom_echo(to="pacs", port=1)
    assert not refused.ok and refused.data["status"] is None
    assert "connection refused" in refused.text


@pytest.mark.timeout(60)
def test_echo_from_a_hung_pacs_times_out(actions: Actions, fault_lab: Lab) -> None:  # noqa: F811
    fault_lab.signal_node("pacs", signal.SIGSTOP)
    try:
        hung = actions.dicom_echo(to="pacs", timeout=1.5)
    finally:
        fault_lab.signal_node("pacs", signal.SIGCONT)
    assert not hung.ok and "timeout" in hung.text, hung.text
    poll(lambda: actions.dicom_echo(to="pacs").ok, bool, 20, "the PACS to answer again")


def test_verify_from_a_modality_console_shows_its_wrong_called_ae(
    actions: Actions,
    fault_lab: Lab,  # noqa: F811
) -> None:
    ok = actions.dicom_echo(**{"from": "ct-1"}, to="pacs")
    assert ok.ok, ok.text
    assert ok.data["calling_ae"] == "CT_1" and ok.data["called_ae"] == "SIMLAB_PACS"

    changed = actions.config_set(node="ct-1", key="destination.ae_title", value="PACS_MAIN")
    assert changed.ok and changed.data["old"] == "SIMLAB_PACS"
    try:
        bad = actions.dicom_echo(**{"from": "ct-1"}, to="pacs")
        assert not bad.ok and "rejected 1/1/7" in bad.text, bad.text
        by_role = actions.dicom_echo(**{"from": "ct-1"}, to="destination")
        assert "rejected 1/1/7" in by_role.text
    finally:
        actions.config_set(node="ct-1", key="destination.ae_title", value="SIMLAB_PACS")
    assert actions.dicom_echo(**{"from": "ct-1"}, to="pacs").ok
    log = fault_lab.client("ct-1").get("/log", contains="verify (C-ECHO)")["lines"]
    assert any("rejected 1/1/7" in line for line in log)
    # The PACS and the viewer verify their peers the same way.
    assert actions.dicom_echo(**{"from": "pacs"}, to="viewer").ok
    assert actions.dicom_echo(**{"from": "viewer"}, to="pacs").ok
    missing = actions.dicom_echo(**{"from": "ris"}, to="pacs")
    assert not missing.ok and "no peer configured for pacs" in missing.text


def test_ae_table_put_and_delete_decide_whether_a_caller_is_known(
    actions: Actions,
    fault_lab: Lab,  # noqa: F811
) -> None:
    assert "1/1/3" in actions.dicom_echo(to="pacs", **{"from": "NEW_WS"}).text
    put = actions.ae_put(node="pacs", ae_title="NEW_WS", host="127.0.0.1", port=11999)
    assert put.ok, put.text
    try:
        listed = actions.ae_list(node="pacs")
        assert any(r["ae_title"] == "NEW_WS" and r["port"] == 11999 for r in listed.data)
        assert actions.dicom_echo(to="pacs", **{"from": "NEW_WS"}).ok
    finally:
        assert actions.ae_delete(node="pacs", ae_title="NEW_WS").ok
    assert "1/1/3" in actions.dicom_echo(to="pacs", **{"from": "NEW_WS"}).text
    assert journal(fault_lab, "ae.delete")["args"] == {"node": "pacs", "ae_title": "NEW_WS"}
    gone = actions.ae_delete(node="pacs", ae_title="NEW_WS")
    assert not gone.ok and gone.text.startswith("404")
    modality = actions.ae_list(node="ct-1")
    assert {r["role"] for r in modality.data} == {"destination", "mwl", "mpps"}
    with pytest.raises(ActionError, match="no AE table"):
        actions.ae_put(node="ct-1", ae_title="X", port=104)


def test_config_get_set_patch(actions: Actions) -> None:
    got = actions.config_get(node="viewer")
    old_description = got.data["ae_table"][0]["description"]
    indexed = actions.config_set(node="viewer", key="ae_table.0.description", value="edited")
    assert indexed.ok and indexed.data["old"] == old_description
    assert actions.config_get(node="viewer").data["ae_table"][0]["description"] == "edited"
    actions.config_set(node="viewer", key="ae_table.0.description", value=old_description)

    patched = actions.config_patch(node="ct-1", patch={"acquisition": {"operator_name": "X^Y"}})
    assert patched.ok
    assert actions.config_get(node="ct-1").data["acquisition"]["operator_name"] == "X^Y"
    actions.config_patch(node="ct-1", patch={"acquisition": {"operator_name": "TECH^SIM"}})

    refused = actions.config_set(node="pacs", key="dicom.port", value="not a port")
    assert not refused.ok and refused.text.startswith("422"), refused.text
    assert "dicom.port" in refused.text  # the node's own validation, by field
    unknown = actions.config_set(node="pacs", key="nowhere.port", value=1)
    assert not unknown.ok and "nowhere" in unknown.text, unknown.text
    with pytest.raises(ActionError, match=r"the config has no ae_table\.99"):
        actions.config_set(node="pacs", key="ae_table.99.port", value=1)


@pytest.mark.timeout(90)
def test_store_find_move_and_delete_a_study(
    actions: Actions,
    fault_lab: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    ids, _files = study_files(
        tmp_path, count=2, ids=Ids(patient_id="ADM-1", patient_name="ACTION^TEST", accession="ACT1")
    )
    stored = actions.dicom_store(to="pacs", files=[str(tmp_path)])
    assert stored.ok and "2 of 2 stored" in stored.text, stored.text
    try:
        listed = actions.studies_list(node="pacs", accession="ACT1")
        assert [s["study_uid"] for s in listed.data] == [ids.study_uid]

        found = actions.dicom_find(to="pacs", level="STUDY", query={"PatientName": "ACTION*"})
        assert found.ok and len(found.data["matches"]) == 1, found.text
        assert found.data["matches"][0]["StudyInstanceUID"] == ids.study_uid
        assert found.data["matches"][0]["AccessionNumber"] == "ACT1"

        unknown = actions.dicom_move(
            to="pacs", destination="NOWHERE", query={"StudyInstanceUID": ids.study_uid}
        )
        assert not unknown.ok and unknown.data["status"] == 0xA801, unknown.text

        moved = actions.dicom_move(
            to="pacs", destination="viewer", query={"StudyInstanceUID": ids.study_uid}
        )
        assert moved.ok, moved.text
        assert moved.data["details"]["suboperations"]["completed"] == 2
        poll(
            lambda: actions.studies_list(node="viewer", accession="ACT1").data,
            bool,
            20,
            "the moved study on the viewer",
        )
        assert actions.study_delete(node="viewer", study_uid=ids.study_uid).ok
    finally:
        deleted = actions.study_delete(node="pacs", study_uid=ids.study_uid)
    assert deleted.ok and deleted.data["instances"] == 2
    assert actions.studies_list(node="pacs", accession="ACT1").data == []
    assert journal(fault_lab, "study.delete")["actor"] == ACTOR


def test_study_edit_calls_the_pacs_console(actions: Actions, tmp_path: Path) -> None:
    ids, _files = study_files(tmp_path, count=1, ids=Ids(patient_id="ADM-2", accession="ACT2"))
    assert actions.dicom_store(to="pacs", files=[str(tmp_path)]).ok
    try:
        edited = actions.study_edit(node="pacs", study_uid=ids.study_uid, tags={"PatientID": "X"})
        if not edited.ok and edited.text.split(":")[0] in ("404", "405"):
            pytest.skip(f"the PACS has no PATCH /studies/{{uid}} yet: {edited.text}")
        assert edited.ok, edited.text
        moved = actions.studies_list(node="pacs", patient_id="X").data
        assert [s["study_uid"] for s in moved] == [ids.study_uid]
    finally:
        actions.study_delete(node="pacs", study_uid=ids.study_uid)


def test_worklist_query_and_mwl_find(actions: Actions) -> None:
    assert actions.worklist_query(node="ct-1").ok
    found = actions.dicom_find(to="ris", query={"Modality": "CT"})
    assert found.ok and "worklist" in found.text, found.text
    with pytest.raises(ActionError, match="not a modality"):
        actions.worklist_query(node="pacs")


@pytest.mark.timeout(90)
def test_ris_queue_list_edit_delete_retry(actions: Actions, fault_lab: Lab) -> None:  # noqa: F811
    assert actions.config_set(node="ris", key="destinations.0.enabled", value=False).ok
    try:
        ris = fault_lab.client("ris")
        ris.post("/patients", {"patient_id": "QA-1", "name": "QUEUE^ONE", "sex": "F"})
        ris.post("/patients", {"patient_id": "QA-2", "name": "QUEUE^TWO", "sex": "M"})
        listed = actions.queue_list(node="ris", state="pending")
        ids = {
            e["message"].split("PID|")[1].split("|")[2].split("^")[0]: e["id"]
            for e in listed.data["items"]
        }
        assert {"QA-1", "QA-2"} <= set(ids), listed.data
        edited = actions.queue_edit(node="ris", id=ids["QA-1"], changes={"PID-5.2": "EDITED"})
        assert edited.ok, edited.text
        entry = ris.get(f"/queue/{ids['QA-1']}")
        assert "QUEUE^EDITED" in entry["message"]
        assert actions.queue_delete(node="ris", id=ids["QA-2"]).ok
        assert actions.queue_retry(node="ris", id=ids["QA-1"]).ok
        assert actions.queue_retry(node="ris").ok  # nothing dead: nothing to do, no error
    finally:
        assert actions.config_set(node="ris", key="destinations.0.enabled", value=True).ok
    poll(
        lambda: ris.get(f"/queue/{ids['QA-1']}")["state"],
        lambda s: s == "sent",
        20,
        "the edited message to be delivered",
    )
    assert ris.get(f"/queue/{ids['QA-2']}")["state"] == "deleted"
    event = journal(fault_lab, "queue.edit")
    assert event["args"]["changes"] == {"PID-5.2": "EDITED"} and event["ok"] is True


def test_modality_queue_maps_onto_its_console(actions: Actions) -> None:
    listed = actions.queue_list(node="ct-1")
    assert listed.ok and "items" in listed.data
    assert actions.queue_retry(node="ct-1").ok
    with pytest.raises(ActionError, match="cannot be edited"):
        actions.queue_edit(node="ct-1", id=1, message="MSH|^~\\&|")
    with pytest.raises(ActionError, match="no send queue"):
        actions.queue_list(node="pacs")


def test_hl7_send_returns_the_ack_codes(actions: Actions) -> None:
    wrong_receiver = (
        "MSH|^~\\&|ADMIN|WS|NOT_PACS|RADIOLOGY|20240101120000||ADT^A08|ADM1|P|2.5\n"
        "PID|1||MRN-X||DOE^JOHN\n"
    )
    rejected = actions.hl7_send(to="pacs", message=wrong_receiver)
    assert not rejected.ok and rejected.data["ack_code"] == "AR"
    assert rejected.data["control_id"] == "ADM1"
    assert rejected.data["errors"][0]["code"] == "103", rejected.data
    register = (
        "MSH|^~\\&|ADMIN|WS|SIMLAB_PACS|RADIOLOGY|20240101120000||ADT^A04|ADM2|P|2.5\r"
        "EVN|A04|20240101120000\rPID|1||MRN-ADM||DOE^JANE||19800101|F\rPV1|1|O\r"
    )
    accepted = actions.hl7_send(to="pacs", message=register)
    assert accepted.ok and accepted.data["ack_code"] == "AA", accepted.text
    with pytest.raises(ActionError, match="no HL7 listener"):
        actions.hl7_send(to="ct-1", message=register)


def test_node_restart_and_status(actions: Actions, fault_lab: Lab) -> None:  # noqa: F811
    before = fault_lab.manifest.node("us-1").pid
    restarted = actions.node_restart(node="us-1")
    assert restarted.ok, restarted.text
    assert fault_lab.manifest.node("us-1").pid != before
    status = actions.node_status(node="us-1")
    assert status.ok and status.data[0]["state"] == "up"
    assert actions.node_status().ok
    assert journal(fault_lab, "node.restart")["args"] == {"node": "us-1"}


def test_api_and_run_action_as_a_scenario_writes_it(fault_lab: Lab) -> None:  # noqa: F811
    result = run_action(fault_lab, "reference", {"action": "api", "node": "pacs", "path": "/stats"})
    assert result.ok and isinstance(result.data, dict)
    step = {"action": "dicom.echo", "from": "mr-1", "to": "pacs"}
    assert run_action(fault_lab, "reference", step).ok
    assert journal(fault_lab, "dicom.echo")["actor"] == "reference"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"action": "ae.nuke", "node": "pacs"}, "unknown action 'ae.nuke'; known: "),
        ({"action": "ae.put", "node": "pacs", "ae_title": "X"}, "ae.put: port: Field required"),
        ({"action": "ae.list", "node": "pacs", "colour": "red"}, "colour: unknown argument"),
        ({"action": "ae.list", "node": "nowhere"}, "has no node 'nowhere'"),
        ({"action": "dicom.echo", "to": "SOME_AE"}, "give host and port"),
        ({"action": "queue.edit", "node": "ris", "id": 1}, "exactly one of message or changes"),
        ({"node": "pacs"}, 'an action step is an object with an "action" key'),
    ],
)
def test_wrong_steps_give_clear_errors_and_are_journalled(
    fault_lab: Lab,  # noqa: F811
    step: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ActionError) as info:
        run_action(fault_lab, ACTOR, step)
    assert message in str(info.value)
    if "action" in step:
        event = journal(fault_lab, step["action"])
        assert event["ok"] is False and message in event["error"]


# ---------------------------------------------------------------- hl7.send to a typed address
_A04_BY_ADDRESS = (
    "MSH|^~\\&|ADMIN|WS|SIMLAB_PACS|RADIOLOGY|20240101120000||ADT^A04|ADDR1|P|2.5\r"
    "EVN|A04|20240101120000\rPID|1||MRN-ADDR||DOE^ADDR||19800101|F\rPV1|1|O\r"
)


@pytest.mark.timeout(60)
def test_hl7_send_to_host_and_port_gets_the_ack_and_is_journalled(
    actions: Actions,
    fault_lab: Lab,  # noqa: F811
) -> None:
    pacs = fault_lab.manifest.node("pacs")
    assert pacs.hl7_port
    sent = actions.hl7_send(host=pacs.host, port=pacs.hl7_port, message=_A04_BY_ADDRESS)
    assert sent.ok and sent.data["ack_code"] == "AA", sent.text
    assert sent.data["control_id"] == "ADDR1"
    assert "MSA|AA|ADDR1" in sent.data["ack"]
    assert sent.text.startswith(f"HL7 to {pacs.host}:{pacs.hl7_port}: ")
    event = journal(fault_lab, "hl7.send")
    assert event["actor"] == ACTOR and event["ok"] is True
    assert event["args"]["host"] == pacs.host and event["args"]["port"] == pacs.hl7_port
    assert "to" not in event["args"]
    # the same step as a scenario writes it, to the RIS's MLLP listener
    ris = fault_lab.manifest.node("ris")
    assert ris.hl7_port
    step = {"action": "hl7.send", "host": ris.host, "port": ris.hl7_port}
    answer = run_action(fault_lab, "reference", {**step, "message": _A04_BY_ADDRESS})
    assert answer.data["ack_code"] in ("AA", "AE", "AR"), answer.text
    assert answer.data["control_id"] == "ADDR1"
    assert journal(fault_lab, "hl7.send")["actor"] == "reference"


@pytest.mark.timeout(30)
def test_hl7_send_to_a_closed_port_fails_without_an_ack(
    actions: Actions,
    fault_lab: Lab,  # noqa: F811
) -> None:
    refused = actions.hl7_send(host="127.0.0.1", port=1, message=_A04_BY_ADDRESS, timeout=3)
    assert not refused.ok and refused.data["ack_code"] is None
    assert "refused" in refused.text, refused.text
    event = journal(fault_lab, "hl7.send")
    assert event["ok"] is False and event["args"]["port"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "give to (a node id) or host and port"),
        ({"to": "pacs", "host": "127.0.0.1", "port": 2575}, "not both"),
        ({"to": "pacs", "port": 2575}, "not both"),
        ({"host": "127.0.0.1"}, "give both host and port"),
        ({"port": 2575}, "give both host and port"),
        ({"host": "127.0.0.1", "port": 0}, "port: Input should be greater than or equal to 1"),
        ({"host": "127.0.0.1", "port": 65536}, "port: Input should be less than or equal to 65535"),
        ({"host": "127.0.0.1", "port": "x"}, "port: Input should be a valid integer"),
        ({"host": "", "port": 2575}, "host: String should have at least 1 character"),
    ],
)
def test_hl7_send_destination_is_validated(
    fault_lab: Lab,  # noqa: F811
    args: dict[str, Any],
    message: str,
) -> None:
    step = {"action": "hl7.send", "message": _A04_BY_ADDRESS, **args}
    with pytest.raises(ActionError) as info:
        run_action(fault_lab, ACTOR, step)
    assert str(info.value).startswith("hl7.send: ")
    assert message in str(info.value)
    event = journal(fault_lab, "hl7.send")
    assert event["ok"] is False and message in event["error"]


# ---------------------------------------------------------------------------------- C-GET
def _dumped_sop_uid(path: Path) -> str:
    """(0008,0018) as DCMTK's dcmdump reads it from a received file (an independent reader)."""
    out = subprocess.run(
        ["dcmdump", "+P", "0008,0018", str(path)], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"\(0008,0018\) UI \[([0-9.]+)\]", out)
    assert match, out
    return match.group(1)


@pytest.mark.timeout(90)
def test_get_client_retrieves_a_study_stored_by_dcmtk(fault_lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    pacs = fault_lab.manifest.node("pacs")
    src = tmp_path / "src"
    src.mkdir()
    ids, files = study_files(src, count=3, ids=Ids(patient_id="GET-1", accession="GET1"))
    sent = storescu(pacs, *files, aet="ADMIN_WS")
    assert sent.returncode == 0, sent.stdout
    out = tmp_path / "received"
    try:
        held = dicom_scu.find(
            pacs.host,
            pacs.dicom_port,
            str(pacs.ae_title),
            {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": ids.study_uid},
        )
        assert held.ok and len(held.matches) == 3, held.text
        result = dicom_scu.get(
            pacs.host,
            pacs.dicom_port,
            str(pacs.ae_title),
            {"StudyInstanceUID": ids.study_uid},
            out,
        )
        assert result.ok and result.status == 0x0000, result.text
        assert "0x0000 Success (3 completed, 0 failed, 0 warning); 3 files saved" in result.text
        assert result.details["suboperations"] == {"completed": 3, "failed": 0, "warning": 0}
        saved = sorted(out.glob("*.dcm"))
        assert len(saved) == 3 and not list((out / ".tmp").iterdir())
        assert all(ids.study_uid not in p.name and re.fullmatch(r"[0-9a-f]{64}\.dcm", p.name)
                   for p in saved)  # fmt: skip
        on_disk = {_dumped_sop_uid(p) for p in saved}
        assert on_disk == {m["SOPInstanceUID"] for m in held.matches}
        assert on_disk == {f["sop_instance"] for f in result.details["files"]}
        assert {f["sop_class_name"] for f in result.details["files"]} == {"CT Image Storage"}
    finally:
        assert Actions(fault_lab, ACTOR).study_delete(node="pacs", study_uid=ids.study_uid).ok


@pytest.mark.timeout(60)
def test_get_client_rejection_and_no_match(fault_lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    pacs = fault_lab.manifest.node("pacs")
    query = {"StudyInstanceUID": "2.25.1234567890"}
    rejected = dicom_scu.get(pacs.host, pacs.dicom_port, "NOT_THE_PACS", query, tmp_path)
    assert not rejected.ok and rejected.status is None
    assert rejected.text == "rejected 1/1/7 (called AE title not recognised)"
    echo = dicom_scu.echo(pacs.host, pacs.dicom_port, "NOT_THE_PACS")
    assert echo.text == rejected.text  # the same words as every other SCU helper

    nothing = dicom_scu.get(pacs.host, pacs.dicom_port, str(pacs.ae_title), query, tmp_path)
    assert nothing.ok and nothing.status == 0x0000, nothing.text
    assert nothing.details["suboperations"]["completed"] == 0
    assert nothing.details["files"] == [] and not list(tmp_path.glob("*.dcm"))


def test_get_client_proposes_at_most_128_contexts_with_the_scp_role() -> None:
    contexts = dicom_scu.get_contexts(dicom_scu._GET_MODELS["study"])
    assert len(contexts) <= dicom_scu.MAX_CONTEXTS
    classes = {uid for uid, _ts in contexts[1:]}
    assert set(dicom_scu.GET_STORAGE_CLASSES) == classes
    for modality_class in ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.2",
                           "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.6.1",
                           "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.1.1"):  # fmt: skip
        assert modality_class in classes


@pytest.mark.timeout(90)
def test_dicom_get_action_saves_to_the_workstation_and_is_journalled(
    actions: Actions,
    fault_lab: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert "dicom.get" in ACTIONS  # the scenario loader validates solution steps against ACTIONS
    ids, _files = study_files(tmp_path, count=2, ids=Ids(patient_id="GET-2", accession="GET2"))
    assert actions.dicom_store(to="pacs", files=[str(tmp_path)]).ok
    try:
        got = actions.dicom_get(to="pacs", level="STUDY", query={"StudyInstanceUID": ids.study_uid})
        assert got.ok, got.text
        assert got.text.startswith("get ADMIN_WS -> SIMLAB_PACS@") and "2 completed" in got.text
        assert got.data["status"] == 0 and got.data["suboperations"]["completed"] == 2
        where = received_dir(fault_lab)
        assert where == fault_lab.paths.root / "admin_ws" / "received"
        assert got.data["directory"] == str(where)
        paths = {Path(f["file"]) for f in got.data["files"]}
        assert len(paths) == 2 and all(p.parent == where and p.is_file() for p in paths)
        assert paths <= set(received_files(fault_lab))
        event = journal(fault_lab, "dicom.get")
        assert event["actor"] == ACTOR and event["ok"] is True
        assert event["args"]["query"] == {"StudyInstanceUID": ids.study_uid}

        by_accession = run_action(
            fault_lab,
            "reference",
            {"action": "dicom.get", "to": "pacs", "query": {"AccessionNumber": "GET2"}},
        )
        assert not by_accession.ok and by_accession.data["status"] == 0xA900, by_accession.text
        event = journal(fault_lab, "dicom.get")
        assert event["actor"] == "reference" and event["ok"] is False
        with pytest.raises(ActionError, match="destination: unknown argument"):
            actions.dicom_get(to="pacs", destination="VIEWER", query={})
    finally:
        assert actions.study_delete(node="pacs", study_uid=ids.study_uid).ok
