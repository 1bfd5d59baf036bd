"""How the CLI prints labs: the endpoint table an administrator copies DCMTK arguments from."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from simlab.runtime.lab import NodeStatus
from simlab.runtime.manifest import NodeEntry

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

STATE_STYLE = {"up": "green", "unhealthy": "yellow", "down": "red", "not started": "dim"}


def _addr(entry: NodeEntry, port: int | None) -> str:
    return f"{entry.host}:{port}" if port else "-"


def endpoint_table(lab_id: str, statuses: list[NodeStatus]) -> Table:
    """node, role, AE title, DICOM host:port, HL7 host:port, admin URL and state (as text too,
    so the table reads without colour)."""
    table = Table(title=f"lab {lab_id}", title_justify="left")
    for column in ("node", "role", "AE title", "DICOM", "HL7 (MLLP)", "admin API", "state"):
        table.add_column(column, no_wrap=True)
    for st in statuses:
        e = st.entry
        style = STATE_STYLE.get(st.state, "")
        state = f"[{style}]{st.state}[/]" if style else st.state
        if st.detail and st.state != "up":
            state += f" ({st.detail})"
        table.add_row(
            e.node_id,
            e.role,
            e.ae_title or "-",
            _addr(e, e.dicom_port),
            _addr(e, e.hl7_port),
            e.admin_url,
            state,
        )
    return table


def dcmtk_hint(statuses: list[NodeStatus]) -> str:
    """Ready-to-paste DCMTK commands against the lab's PACS."""
    for st in statuses:
        e = st.entry
        if e.role == "pacs" and e.dicom_port:
            target = f"-aec {e.ae_title} {e.host} {e.dicom_port}"
            return (
                "Try it from outside with DCMTK:\n"
                f"  echoscu -v -aet ADMIN_WS {target}\n"
                f"  storescu -aet ADMIN_WS {target} FILE.dcm\n"
                f"  findscu -S -k QueryRetrieveLevel=STUDY -k PatientName='*' "
                f"-aet ADMIN_WS {target}\n"
                f"  movescu -S -aet ADMIN_WS -aem ADMIN_WS --port 11113 "
                f"-k QueryRetrieveLevel=STUDY -k StudyInstanceUID=UID {target}"
            )
    return ""
