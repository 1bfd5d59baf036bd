"""How the CLI prints labs: the endpoint table an administrator copies DCMTK arguments from."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from simlab.runtime.lab import NodeStatus
from simlab.runtime.manifest import NodeEntry

if TYPE_CHECKING:
    from simlab.workflow.day import DayReport

# Piped output (logs, scripts, tests) is not cut at 80 columns: an endpoint must stay readable.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

STATE_STYLE = {"up": "green", "unhealthy": "yellow", "down": "red", "not started": "dim"}


def _addr(entry: NodeEntry, port: int | None) -> str:
    return f"{entry.host}:{port}" if port else "-"


def endpoint_table(lab_id: str, statuses: list[NodeStatus]) -> Table:
    """node, role, AE title, DICOM host:port, HL7 host:port, admin URL and state (as text too,
    so the table reads without colour)."""
    table = Table(title=f"lab {lab_id}", title_justify="left")
    for column in ("node", "role", "AE title", "DICOM", "HL7 (MLLP)", "admin API", "state"):
        table.add_column(column, overflow="fold")
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
    """Ready-to-paste DCMTK commands against the lab's PACS and RIS."""
    by_role = {st.entry.role: st.entry for st in statuses}
    lines = ["Try it from outside with DCMTK:"]
    pacs = by_role.get("pacs")
    if pacs and pacs.dicom_port:
        target = f"-aec {pacs.ae_title} {pacs.host} {pacs.dicom_port}"
        lines += [
            f"  echoscu -v -aet ADMIN_WS {target}",
            f"  storescu -aet ADMIN_WS {target} FILE.dcm",
            f"  findscu -S -k QueryRetrieveLevel=STUDY -k PatientName='*' -aet ADMIN_WS {target}",
            f"  movescu -S -aet ADMIN_WS -aem ADMIN_WS --port 11113 "
            f"-k QueryRetrieveLevel=STUDY -k StudyInstanceUID=UID {target}",
        ]
    ris = by_role.get("ris")
    if ris and ris.dicom_port:
        lines.append(
            f"  findscu -W -k 'ScheduledProcedureStepSequence[0].Modality=CT' -k PatientName "
            f"-k AccessionNumber -aet ADMIN_WS -aec {ris.ae_title} {ris.host} {ris.dicom_port}"
        )
    return "\n".join(lines) if len(lines) > 1 else ""


def day_table(report: DayReport, checks: tuple[str, ...]) -> Table:
    """The reconciliation report: one row an order, 'yes'/'NO' per check (readable without
    colour), and what went wrong in the notes."""
    table = Table(title="reconciliation", title_justify="left")
    for column in ("accession", "patient", "modality", *checks, "notes"):
        table.add_column(column, overflow="fold")
    for order in report.orders:
        cells = ["[green]yes[/]" if order.checks.get(name) else "[red]NO[/]" for name in checks]
        table.add_row(
            order.accession,
            order.patient_id,
            f"{order.modality} {order.station}",
            *cells,
            "; ".join(order.notes),
        )
    return table
