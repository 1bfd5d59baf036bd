"""`simlab admin …` against a running department: readable output, exit codes, the journal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simlab.cli.main import app
from simlab.runtime.lab import Lab
from tests.dicom_files import Ids, study_files
from tests.lab_fixtures import fault_lab  # noqa: F401 (fixture)


@pytest.fixture
def admin(fault_lab: Lab):  # noqa: F811
    """Run `simlab admin ARGS… --home H --lab faults`; returns the click Result."""
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None, actor: str = "bob"):
        argv = ["admin", *args, "--home", str(fault_lab.paths.home), "--lab", "faults"]
        return runner.invoke(app, argv, input=stdin, env={"SIMLAB_ACTOR": actor})

    return run


def last_action(lab: Lab) -> dict:
    return [e for e in lab.events.read() if e["kind"] == "action"][-1]


def test_echo_from_the_workstation_and_from_a_modality(admin, fault_lab: Lab) -> None:  # noqa: F811
    ok = admin("echo", "--to", "pacs")
    assert ok.exit_code == 0, ok.output
    assert "echo ADMIN_WS -> SIMLAB_PACS@" in ok.output and "0x0000 Success" in ok.output
    event = last_action(fault_lab)
    assert event["action"] == "dicom.echo" and event["actor"] == "bob" and event["ok"]

    rejected = admin("echo", "--to", "pacs", "--aec", "WRONG_AE")
    assert rejected.exit_code == 1
    assert "rejected 1/1/7 (called AE title not recognised)" in rejected.output

    from_ct = admin("echo", "--from", "ct-1", "--to", "pacs", actor="carol")
    assert from_ct.exit_code == 0, from_ct.output
    assert "echo from ct-1 CT_1 -> SIMLAB_PACS" in from_ct.output
    assert last_action(fault_lab)["actor"] == "carol"


def test_store_find_studies_and_delete(admin, tmp_path: Path) -> None:
    ids, files = study_files(tmp_path, count=1, ids=Ids(patient_id="CLI-1", accession="CLI1"))
    stored = admin("store", "pacs", *map(str, files))
    assert stored.exit_code == 0, stored.output
    assert "1 of 1 stored" in stored.output
    try:
        found = admin("find", "pacs", "--level", "study", "-k", "PatientID=CLI-1", "--json")
        assert found.exit_code == 0, found.output
        payload = json.loads(found.stdout)
        assert payload["data"]["matches"][0]["StudyInstanceUID"] == ids.study_uid
        listed = admin("studies", "pacs", "--accession", "CLI1")
        assert listed.exit_code == 0 and "1 study" in listed.output
    finally:
        deleted = admin("study-delete", "pacs", ids.study_uid)
    assert deleted.exit_code == 0, deleted.output
    missing = admin("study-delete", "pacs", ids.study_uid)
    assert missing.exit_code == 1 and "404" in missing.output


def test_set_value_is_json_when_it_parses(admin, fault_lab: Lab) -> None:  # noqa: F811
    changed = admin("set", "ct-1", "acquisition.operator_name", "DOE^TECH")
    assert changed.exit_code == 0, changed.output
    assert 'acquisition.operator_name = "DOE^TECH" (was "TECH^SIM")' in changed.output
    admin("set", "ct-1", "acquisition.operator_name", "TECH^SIM")
    numeric = admin("set", "ct-1", "send_queue.max_attempts", "3")
    assert numeric.exit_code == 0 and "= 3 (was 3)" in numeric.output
    assert last_action(fault_lab)["args"]["value"] == 3
    bad = admin("set", "ct-1", "send_queue.max_attempts", "many")
    assert bad.exit_code == 1 and "422" in bad.output


def test_ae_table_commands(admin) -> None:
    put = admin("ae", "put", "pacs", "CLI_WS", "127.0.0.1", "11998", "--description", "test")
    assert put.exit_code == 0, put.output
    listed = admin("ae", "list", "pacs")
    assert "CLI_WS" in listed.output
    assert admin("echo", "--from", "CLI_WS", "--to", "pacs").exit_code == 0
    assert admin("ae", "delete", "pacs", "CLI_WS").exit_code == 0
    assert "1/1/3" in admin("echo", "--from", "CLI_WS", "--to", "pacs").output


def test_queue_hl7_and_status_commands(admin) -> None:
    assert admin("queue", "ris").exit_code == 0
    assert admin("queue", "ct-1", "retry").exit_code == 0
    not_editable = admin("queue", "ct-1", "edit", "1", "--field", "PID-3=X")
    assert not_editable.exit_code == 2 and "cannot be edited" in not_editable.output
    message = "MSH|^~\\&|ADMIN|WS|ELSEWHERE|RADIOLOGY|20240101||ADT^A08|CLI9|P|2.5\nPID|1||X\n"
    sent = admin("hl7-send", "pacs", "-", stdin=message)
    assert sent.exit_code == 1
    assert "MSA-1 AR" in sent.output and "ERR 103 at MSH^1^5" in sent.output
    status = admin("status", "pacs")
    assert status.exit_code == 0 and "pacs up" in status.output


def test_run_action_call_and_clear_errors(admin, fault_lab: Lab) -> None:  # noqa: F811
    step = json.dumps({"action": "dicom.echo", "from": "mr-1", "to": "pacs"})
    assert admin("run-action", step).exit_code == 0
    called = admin("call", "pacs", "GET", "/stats")
    assert called.exit_code == 0 and isinstance(json.loads(called.stdout), dict)
    assert last_action(fault_lab)["action"] == "api"

    unknown = admin("run-action", '{"action": "pacs.fix"}')
    assert unknown.exit_code == 2 and "unknown action 'pacs.fix'" in unknown.output
    wrong = admin("run-action", '{"action": "ae.put", "node": "pacs", "ae_title": "X"}')
    assert wrong.exit_code == 2 and "port: Field required" in wrong.output
    no_node = admin("ae", "list", "nowhere")
    assert no_node.exit_code == 2 and "has no node 'nowhere'" in no_node.output
    not_json = admin("run-action", "{nope")
    assert not_json.exit_code == 2 and "not valid JSON" in not_json.output


def test_actions_lists_the_registry() -> None:
    listed = CliRunner().invoke(app, ["admin", "actions"])
    assert listed.exit_code == 0
    assert "dicom.echo" in listed.output and "from?" in listed.output


@pytest.mark.timeout(90)
def test_get_saves_the_study_and_prints_status_counts_and_files(
    admin,
    fault_lab: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    ids, files = study_files(tmp_path, count=2, ids=Ids(patient_id="CLI-G", accession="CLIG"))
    assert admin("store", "pacs", *map(str, files)).exit_code == 0
    try:
        got = admin(
            "get", "--to", "pacs", "--level", "STUDY", "-k", f"StudyInstanceUID={ids.study_uid}"
        )
        assert got.exit_code == 0, got.output
        assert "get ADMIN_WS -> SIMLAB_PACS@" in got.output
        assert "0x0000 Success" in got.output
        assert "sub-operations: 2 completed, 0 failed, 0 warning" in got.output
        assert "CT Image Storage" in got.output
        event = last_action(fault_lab)
        assert event["action"] == "dicom.get" and event["actor"] == "bob" and event["ok"]
        assert event["args"]["level"] == "STUDY" and event["args"]["model"] == "study"

        keys = ["-k", "PatientID=CLI-G", "-k", f"StudyInstanceUID={ids.study_uid}"]
        as_json = admin("get", "pacs", "--model", "patient", "--level", "STUDY", *keys, "--json")
        assert as_json.exit_code == 0, as_json.output
        payload = json.loads(as_json.stdout)
        saved = [Path(f["file"]) for f in payload["data"]["files"]]
        assert len(saved) == 2 and all(p.is_file() for p in saved)
        assert all(p.parent == fault_lab.paths.root / "admin_ws" / "received" for p in saved)

        by_accession = admin("get", "--to", "pacs", "-k", "AccessionNumber=CLIG")
        assert by_accession.exit_code == 1
        assert "0xA900 Error: Data set does not match SOP class" in by_accession.output
        assert "needs StudyInstanceUID" in by_accession.output

        rejected = admin("get", "--to", "pacs", "--from", "STRANGER", "-k", "StudyInstanceUID=1.2")
        assert rejected.exit_code == 1
        assert "rejected 1/1/3 (calling AE title not recognised)" in rejected.output
    finally:
        assert admin("study-delete", "pacs", ids.study_uid).exit_code == 0
