"""The HL7 toolbox sends to an address the trainee types through the journalled `hl7.send`.

A real department lab (module-scoped); the toolbox screen runs in a one-screen app with the
TUI's own session, the address is typed as host:port, F5 sends, and the journal must show the
`hl7.send` action with the session's actor and the address, exactly as the action writes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, TextArea

from simlab.runtime.lab import Lab
from simlab.tui.screens.hl7_toolbox import HL7ToolboxScreen
from simlab.tui.session import TuiSession
from simlab.tui.widgets.toolbox_hl7 import field_value
from tests.lab_fixtures import fault_lab  # noqa: F401 (fixture)
from tests.pilot_helpers import OneScreenApp

SIZE = (100, 32)
ACTOR = "hl7-address-tester"


def toolbox(lab: Lab) -> HL7ToolboxScreen:
    session = TuiSession(home=lab.paths.home, actor=ACTOR)
    session.attach(lab, None, started_here=False)
    return HL7ToolboxScreen(session)


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def type_address_and_send(pilot: Pilot[Any], address: str) -> str:
    """Pick the ADT^A04 template, choose 'host:port typed below', type it, F5; the ACK text."""
    screen = pilot.app.screen
    screen.query_one("#hl7-template", Select).value = "ADT^A04"
    await settle(pilot)
    assert field_value(screen.query_one("#hl7-message", TextArea).text, "MSH-9").startswith(
        "ADT^A04"
    )
    screen.query_one("#hl7-target", Select).value = "__address__"
    await pilot.pause()
    field = screen.query_one("#hl7-address", Input)
    assert field.display and field.has_focus
    await pilot.press(*address)
    assert field.value == address
    await pilot.press("f5")
    await settle(pilot)
    return str(screen.query_one("#hl7-ack", Static).content)


def hl7_actions(lab: Lab) -> list[dict[str, Any]]:
    return [e for e in lab.events.read() if e["kind"] == "action" and e["action"] == "hl7.send"]


@pytest.mark.timeout(90)
def test_typed_address_sends_through_the_hl7_send_action(fault_lab: Lab) -> None:  # noqa: F811
    pacs = fault_lab.manifest.node("pacs")
    before = len(hl7_actions(fault_lab))

    async def body() -> str:
        app = OneScreenApp(lambda: toolbox(fault_lab))
        async with app.run_test(size=SIZE) as pilot:
            return await type_address_and_send(pilot, f"{pacs.host}:{pacs.hl7_port}")

    ack = asyncio.run(body())
    assert "MSA-1  AA  Application Accept" in ack, ack
    sent = hl7_actions(fault_lab)[before:]
    assert len(sent) == 1, sent
    event = sent[0]
    assert event["actor"] == ACTOR and event["ok"] is True
    assert event["args"]["host"] == pacs.host and event["args"]["port"] == pacs.hl7_port
    assert "to" not in event["args"] and event["args"]["message"].startswith("MSH|")
    assert event["result"].startswith(f"HL7 to {pacs.host}:{pacs.hl7_port}: ")


@pytest.mark.timeout(90)
def test_typed_address_out_of_range_shows_the_action_error(fault_lab: Lab) -> None:  # noqa: F811
    before = len(hl7_actions(fault_lab))

    async def body() -> str:
        app = OneScreenApp(lambda: toolbox(fault_lab))
        async with app.run_test(size=SIZE) as pilot:
            return await type_address_and_send(pilot, "127.0.0.1:70000")

    shown = asyncio.run(body())
    assert "✘ hl7.send: port: Input should be less than or equal to 65535" in shown, shown
    sent = hl7_actions(fault_lab)[before:]
    assert len(sent) == 1 and sent[0]["ok"] is False and sent[0]["actor"] == ACTOR
    assert "65535" in sent[0]["error"]
