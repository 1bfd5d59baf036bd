"""The dashboard's view of the nodes' logs: which lines a trainee watches, read incrementally."""

from __future__ import annotations

from pathlib import Path

import pytest

from simlab.runtime.node_logs import NodeLogTail, parse_line, worth_showing

PACS_LOG = (Path(__file__).parent / "data" / "pacs-node.log").read_text(encoding="utf-8")
"""A PACS log as the node writes it: traffic, config changes, pynetdicom's lines, a traceback."""


@pytest.mark.timeout(10)
def test_only_the_protocol_traffic_and_the_nodes_own_problems_are_shown() -> None:
    lines = [parse_line("pacs", raw) for raw in PACS_LOG.splitlines()]
    shown = [line.message for line in lines if line is not None and worth_showing(line)]
    assert shown == [
        "association released: CT_1 (127.0.0.1:56200) after 0.2 s: 4 object(s) stored, 0 refused",
        "association REJECTED: CT_1 (127.0.0.1:4242) -> PACS_MAIN: result 1 (rejected-permanent),"
        " source 1 (service-user), reason 7 (called AE title not recognised) (we are SIMLAB_PACS)",
        "C-STORE CT Image Storage 1.2.3.5 from CT_1: 0xA700 Out of resources",
        "HL7 ORM^O01 ctrl=RIS12 from SIMLAB_RIS/RADIOLOGY: ACK AR (ERR 103)",
    ]


@pytest.mark.timeout(10)
def test_the_tail_returns_appended_whole_lines_once_in_time_order(tmp_path: Path) -> None:
    pacs, ris = tmp_path / "pacs.log", tmp_path / "ris.log"
    pacs.write_text(PACS_LOG.splitlines()[1] + "\n", encoding="utf-8")
    tail = NodeLogTail({"pacs": pacs, "ris": ris})
    assert tail.new_lines() == []  # no backlog asked: what was there before is not shown
    with open(pacs, "a", encoding="utf-8") as fh:
        fh.write(PACS_LOG.splitlines()[5] + "\n")
        fh.write("2026-11-23 18:21:09.000 WARNING pacs: C-MOVE half a li")  # not whole yet
    ris.write_text(
        "2026-11-23 18:21:02.000 INFO    ris: HL7 out #3 ADT^A04 ctrl=RIS3 to pacs: ACK AA"
        " (attempt 1)\n",
        encoding="utf-8",
    )
    got = [(line.node, line.message[:22]) for line in tail.new_lines()]
    assert got == [("pacs", "association REJECTED: "), ("ris", "HL7 out #3 ADT^A04 ctr")]
    with open(pacs, "a", encoding="utf-8") as fh:
        fh.write("ne\n")
    (event,) = [line.as_event() for line in tail.new_lines()]
    assert event["kind"] == "node_log" and event["message"] == "C-MOVE half a line"
    assert tail.new_lines() == []
    pacs.write_text("", encoding="utf-8")  # truncated: read again from the start
    assert tail.new_lines() == []


@pytest.mark.timeout(10)
def test_a_backlog_shows_the_last_lines_of_a_log(tmp_path: Path) -> None:
    pacs = tmp_path / "pacs.log"
    pacs.write_text(PACS_LOG, encoding="utf-8")
    tail = NodeLogTail({"pacs": pacs}, backlog=len(PACS_LOG.splitlines()[-1]) + 150)
    assert [line.message[:6] for line in tail.new_lines()] == ["HL7 OR"]
