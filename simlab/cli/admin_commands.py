"""`simlab admin …`: what an administrator does at the department's consoles, from the shell.

Every command is one action of simlab/workflow/actions (the same engine the TUI and scenario
reference solutions use), so each is journalled in the lab's event log with the actor's name.
A command prints a readable result and exits 1 when the action failed (a rejected association,
a refused change), 2 when it could not run as asked (unknown node, wrong arguments).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from simlab.cli.lab_commands import HomeOpt, LabOpt, open_lab
from simlab.cli.output import console, err_console
from simlab.client.admin import AdminApiError
from simlab.workflow.actions import ACTIONS, ActionError, ActionResult, Actions

app = typer.Typer(help="Administer the lab's nodes: consoles, DICOM and HL7 toolboxes.")
ae_app = typer.Typer(help="A node's AE table: the DICOM peers it knows.")
app.add_typer(ae_app, name="ae")

NodeArg = Annotated[str, typer.Argument(help="Node id, e.g. pacs or ct-1.")]
ActorOpt = Annotated[
    str,
    typer.Option("--actor", envvar="SIMLAB_ACTOR", help="Who is acting (journalled)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")]
KeysOpt = Annotated[
    list[str] | None,
    typer.Option("-k", "--key", help="Query key KEYWORD=VALUE (or KEYWORD to return it)."),
]
FromOpt = Annotated[
    str,
    typer.Option("--from", help="A node id, or a calling AE title used from the admin WS."),
]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds for each DICOM/HL7 step.")]

MAX_COLUMNS = 8


# ------------------------------------------------------------------------------- plumbing
def _run(
    lab: str, home: Path | None, actor: str, name: str, as_json: bool = False, **args: Any
) -> ActionResult:
    """Run one action (options left unset are not passed), print it, exit 1/2 on failure."""
    step = {k: v for k, v in args.items() if v is not None}
    return _perform(lab, home, actor, name, step, as_json)


def _perform(
    lab: str, home: Path | None, actor: str, name: str, step: dict[str, Any], as_json: bool
) -> ActionResult:
    the_lab = open_lab(home, lab)
    try:
        result = Actions(the_lab, actor).perform(name, step)
    except ActionError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    _show(result, as_json)
    if not result.ok:
        err_console.print(f"[red]failed:[/] {result.text}")
        if result.action == "api" and result.data is not None:
            err_console.print(json.dumps(result.data, indent=2, ensure_ascii=False))
        raise typer.Exit(1)
    return result


def _show(result: ActionResult, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=str))
        return
    data = result.data
    rows = None
    if isinstance(data, list):
        rows = data
    elif isinstance(data, dict):
        rows = data.get("matches") or data.get("items")
    if rows and all(isinstance(r, dict) for r in rows):
        console.print(_table(rows))
    elif result.action in ("config.get", "api"):
        if result.ok:  # the answer alone, as the console shows it (pipe it to jq)
            typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    elif result.action == "hl7.send" and isinstance(data, dict) and data.get("ack"):
        typer.echo(data["ack"])
    if result.ok:
        typer.echo(result.text)


def _table(rows: list[dict[str, Any]]) -> Table:
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in columns and not isinstance(value, (dict, list)):
                columns.append(key)
    columns = columns[:MAX_COLUMNS]
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    return table


def _pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """KEY=VALUE options to a dict; a bare KEY is a return key (empty value)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not key.strip():
            raise typer.BadParameter(f"{item!r}: write KEY=VALUE", param_hint=what)
        out[key.strip()] = value if sep else ""
    return out


def _json_or_text(value: str) -> Any:
    """A JSON value when it parses ('4101', 'true', '{"a": 1}'), else the text itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {source}: {exc.strerror}") from None


# ------------------------------------------------------------------------ console basics
@app.command()
def call(
    node: NodeArg,
    method: Annotated[str, typer.Argument(help="GET, PUT, PATCH, POST or DELETE.")],
    path: Annotated[str, typer.Argument(help="API path, e.g. /ae-table or /studies.")],
    data: Annotated[str | None, typer.Option("--data", "-d", help="JSON body.")] = None,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
) -> None:
    """Send one request to a node's admin API and print the JSON answer."""
    method = method.upper()
    if method not in {"GET", "PUT", "PATCH", "POST", "DELETE"}:
        raise typer.BadParameter(f"unknown method {method}", param_hint="METHOD")
    body = None
    if data is not None:
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    _run(lab, home, actor, "api", node=node, method=method, path=path, body=body)


@app.command()
def config(
    node: NodeArg, lab: LabOpt = "default", home: HomeOpt = None, actor: ActorOpt = "trainee"
) -> None:
    """Show a node's configuration."""
    _run(lab, home, actor, "config.get", node=node)


@app.command("set")
def set_(
    node: NodeArg,
    key: Annotated[str, typer.Argument(help="Dotted path, e.g. destination.port.")],
    value: Annotated[str, typer.Argument(help="New value; JSON when it parses, else text.")],
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """Change one setting of a node, e.g. `simlab admin set ct-1 destination.port 4101`."""
    _run(lab, home, actor, "config.set", as_json, node=node, key=key, value=_json_or_text(value))


@app.command()
def patch(
    node: NodeArg,
    patch_json: Annotated[str, typer.Argument(metavar="JSON", help="A JSON merge patch.")],
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """Change part of a node's configuration with a JSON merge patch."""
    body = _json_or_text(patch_json)
    if not isinstance(body, dict):
        raise typer.BadParameter("the patch must be a JSON object", param_hint="JSON")
    _run(lab, home, actor, "config.patch", as_json, node=node, patch=body)


@app.command()
def log(
    node: NodeArg,
    lines: Annotated[int, typer.Option("-n", help="How many lines.")] = 50,
    lab: LabOpt = "default",
    home: HomeOpt = None,
) -> None:
    """Show the end of a node's log."""
    the_lab = open_lab(home, lab)
    try:
        payload = the_lab.client(node).get("/log", lines=lines)
    except (KeyError, AdminApiError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    for line in payload["lines"]:
        typer.echo(line)


# ----------------------------------------------------------------------------- processes
@app.command()
def restart(
    node: NodeArg, lab: LabOpt = "default", home: HomeOpt = None, actor: ActorOpt = "trainee"
) -> None:
    """Restart a node (it reads its config file again)."""
    _run(lab, home, actor, "node.restart", node=node)


@app.command()
def start(
    node: NodeArg, lab: LabOpt = "default", home: HomeOpt = None, actor: ActorOpt = "trainee"
) -> None:
    """Start a node that is down."""
    _run(lab, home, actor, "node.start", node=node)


@app.command()
def stop(
    node: NodeArg, lab: LabOpt = "default", home: HomeOpt = None, actor: ActorOpt = "trainee"
) -> None:
    """Stop a node."""
    _run(lab, home, actor, "node.stop", node=node)


@app.command()
def status(
    node: Annotated[str | None, typer.Argument(help="One node (default: all).")] = None,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """Health of the lab's nodes (exit 1 when one is not up)."""
    _run(lab, home, actor, "node.status", as_json, node=node)


# ----------------------------------------------------------------------------- AE tables
@ae_app.command("list")
def ae_list(
    node: NodeArg,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """List the peers a node knows."""
    _run(lab, home, actor, "ae.list", as_json, node=node)


@ae_app.command("put")
def ae_put(
    node: NodeArg,
    ae_title: Annotated[str, typer.Argument(help="The peer's AE title.")],
    host: Annotated[str, typer.Argument(help="The peer's host.")],
    port: Annotated[int, typer.Argument(help="The peer's DICOM port.")],
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
) -> None:
    """Add a peer to a node's AE table, or change it."""
    _run(
        lab,
        home,
        actor,
        "ae.put",
        node=node,
        ae_title=ae_title,
        host=host,
        port=port,
        description=description,
    )


@ae_app.command("delete")
def ae_delete(
    node: NodeArg,
    ae_title: Annotated[str, typer.Argument(help="The peer's AE title.")],
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
) -> None:
    """Remove a peer from a node's AE table."""
    _run(lab, home, actor, "ae.delete", node=node, ae_title=ae_title)


# ---------------------------------------------------------------------------- DICOM tools
@app.command()
def echo(
    to: Annotated[str, typer.Option("--to", help="A node id, an AE title, or a role.")],
    from_: FromOpt = "ADMIN_WS",
    ae_title: Annotated[str | None, typer.Option("--aec", help="Called AE title.")] = None,
    host: Annotated[str | None, typer.Option(help="Host (with an AE title).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (with an AE title).")] = None,
    timeout: TimeoutOpt = 10.0,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """C-ECHO: from the admin workstation, or with --from NODE from that node's console."""
    _run(
        lab,
        home,
        actor,
        "dicom.echo",
        as_json,
        **{"from": from_},
        to=to,
        ae_title=ae_title,
        host=host,
        port=port,
        timeout=timeout,
    )


@app.command()
def find(
    node: NodeArg,
    key: KeysOpt = None,
    level: Annotated[
        str | None, typer.Option(help="PATIENT, STUDY, SERIES or IMAGE.", case_sensitive=False)
    ] = None,
    model: Annotated[str | None, typer.Option(help="study, patient or worklist.")] = None,
    from_: FromOpt = "ADMIN_WS",
    timeout: TimeoutOpt = 10.0,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """C-FIND, e.g. `simlab admin find pacs --level study -k PatientName=DOE*`."""
    _run(
        lab,
        home,
        actor,
        "dicom.find",
        as_json,
        **{"from": from_},
        to=node,
        level=level.upper() if level else None,
        model=model,
        query=_pairs(key, "-k"),
        timeout=timeout,
    )


@app.command()
def move(
    node: NodeArg,
    destination: Annotated[str, typer.Option("--dest", help="Move destination AE or node.")],
    key: KeysOpt = None,
    level: Annotated[str, typer.Option(help="PATIENT, STUDY, SERIES or IMAGE.")] = "STUDY",
    from_: FromOpt = "ADMIN_WS",
    timeout: TimeoutOpt = 60.0,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """C-MOVE, e.g. `simlab admin move pacs --dest viewer -k StudyInstanceUID=1.2.3`."""
    _run(
        lab,
        home,
        actor,
        "dicom.move",
        as_json,
        **{"from": from_},
        to=node,
        destination=destination,
        level=level.upper(),
        query=_pairs(key, "-k"),
        timeout=timeout,
    )


@app.command()
def get(
    node: Annotated[str | None, typer.Argument(help="Node id (or use --to).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Node id, e.g. pacs.")] = None,
    key: KeysOpt = None,
    level: Annotated[str, typer.Option(help="PATIENT, STUDY, SERIES or IMAGE.")] = "STUDY",
    model: Annotated[str, typer.Option(help="study or patient (root).")] = "study",
    from_: FromOpt = "ADMIN_WS",
    timeout: TimeoutOpt = 60.0,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """C-GET to this workstation, e.g. `simlab admin get --to pacs -k StudyInstanceUID=1.2.3`.

    The objects come back on the same association and are saved in the lab's
    admin_ws/received/ directory; prints the final status, the sub-operation counts and the files.
    """
    if node and to and node != to:
        raise typer.BadParameter(f"two targets: {node} and --to {to}", param_hint="--to")
    target = to or node
    if not target:
        raise typer.BadParameter("say which node to retrieve from", param_hint="--to")
    step = {
        "from": from_,
        "to": target,
        "model": model.lower(),
        "level": level.upper(),
        "query": _pairs(key, "-k"),
        "timeout": timeout,
    }
    the_lab = open_lab(home, lab)
    try:
        result = Actions(the_lab, actor).perform("dicom.get", step)
    except ActionError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        data = result.data if isinstance(result.data, dict) else {}
        typer.echo(result.text)
        counts = data.get("suboperations") or {}
        if counts:
            typer.echo(
                "sub-operations: "
                + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("completed", "failed", "warning"))
            )
        files = data.get("files") or []
        if files:
            table = Table(title=f"saved in {data.get('directory', '')}")
            for column in ("File", "SOP Class", "SOP Instance UID"):
                table.add_column(column, overflow="fold")
            for row in files:
                table.add_row(
                    Path(row["file"]).name,
                    row.get("sop_class_name") or row.get("sop_class", ""),
                    row.get("sop_instance", ""),
                )
            console.print(table)
    if not result.ok:
        err_console.print(f"[red]failed:[/] {result.text}")
        raise typer.Exit(1)


@app.command()
def store(
    node: NodeArg,
    files: Annotated[list[Path], typer.Argument(help="DICOM files or directories.")],
    from_: FromOpt = "ADMIN_WS",
    timeout: TimeoutOpt = 30.0,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """C-STORE files from this machine, e.g. `simlab admin store pacs *.dcm`."""
    _run(
        lab,
        home,
        actor,
        "dicom.store",
        as_json,
        **{"from": from_},
        to=node,
        files=[str(f) for f in files],
        timeout=timeout,
    )


@app.command()
def worklist(
    node: NodeArg,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """Have a modality query its worklist now."""
    _run(lab, home, actor, "worklist.query", as_json, node=node)


# ------------------------------------------------------------------------- studies, queues
@app.command()
def studies(
    node: NodeArg,
    accession: Annotated[str | None, typer.Option(help="Only this accession number.")] = None,
    patient_id: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """List the studies a node holds."""
    _run(
        lab,
        home,
        actor,
        "studies.list",
        as_json,
        node=node,
        accession=accession,
        patient_id=patient_id,
    )


@app.command("study-delete")
def study_delete(
    node: NodeArg,
    study_uid: Annotated[str, typer.Argument(help="Study Instance UID.")],
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
) -> None:
    """Delete a study (its files and index rows)."""
    _run(lab, home, actor, "study.delete", node=node, study_uid=study_uid)


@app.command("study-edit")
def study_edit(
    node: NodeArg,
    study_uid: Annotated[str, typer.Argument(help="Study Instance UID.")],
    tag: Annotated[
        list[str], typer.Option("-t", "--tag", help="KEYWORD=VALUE, e.g. PatientID=MRN-1.")
    ],
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
) -> None:
    """Correct tags of a stored study."""
    _run(lab, home, actor, "study.edit", node=node, study_uid=study_uid, tags=_pairs(tag, "-t"))


@app.command()
def queue(
    node: NodeArg,
    operation: Annotated[
        str, typer.Argument(help="list, retry, delete or edit.", metavar="[OPERATION]")
    ] = "list",
    entry_id: Annotated[int | None, typer.Argument(help="Queue entry id.")] = None,
    state: Annotated[str | None, typer.Option(help="list: only entries in this state.")] = None,
    message: Annotated[
        str | None, typer.Option(help="edit: file with the new message ('-': stdin).")
    ] = None,
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="edit: SEG-n=VALUE, e.g. MSH-5=X.")
    ] = None,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """A node's send queue: list it, retry (one entry or all failed), delete or edit one."""
    operation = operation.lower()
    if operation == "list":
        _run(lab, home, actor, "queue.list", as_json, node=node, state=state)
        return
    if operation == "retry":
        _run(lab, home, actor, "queue.retry", as_json, node=node, id=entry_id)
        return
    if operation not in ("delete", "edit"):
        raise typer.BadParameter("use list, retry, delete or edit", param_hint="OPERATION")
    if entry_id is None:
        raise typer.BadParameter(f"{operation} needs a queue entry id", param_hint="ENTRY_ID")
    if operation == "delete":
        _run(lab, home, actor, "queue.delete", as_json, node=node, id=entry_id)
        return
    changes = _pairs(field, "--field") if field else None
    text = _read_text(message) if message is not None else None
    _run(
        lab,
        home,
        actor,
        "queue.edit",
        as_json,
        node=node,
        id=entry_id,
        message=text,
        changes=changes,
    )


# ------------------------------------------------------------------------------------ HL7
@app.command("hl7-send")
def hl7_send(
    node: Annotated[
        str | None,
        typer.Argument(metavar="NODE", help="Node id, e.g. pacs (leave out with --host/--port)."),
    ] = None,
    source: Annotated[
        str | None, typer.Argument(metavar="FILE|-", help="The message ('-': stdin).")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Send to this address instead of a node.")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="MLLP port (with --host).")] = None,
    timeout: TimeoutOpt = 10.0,
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """Send one HL7 message to a node's MLLP port (or --host/--port) and print the ACK.

    simlab admin hl7-send pacs msg.hl7 · simlab admin hl7-send --host 127.0.0.1 --port 2575 -
    """
    if source is None and (host is not None or port is not None):
        node, source = None, node
    if source is None:
        err_console.print("[red]error:[/] give the message: FILE or - (stdin)")
        raise typer.Exit(2)
    _run(
        lab,
        home,
        actor,
        "hl7.send",
        as_json,
        to=node,
        host=host,
        port=port,
        message=_read_text(source),
        timeout=timeout,
    )


# ------------------------------------------------------------------------------- scripted
@app.command("actions")
def list_actions() -> None:
    """List every action (for run-action and scenario reference solutions) and its arguments."""
    table = Table()
    for column in ("action", "arguments", "what"):
        table.add_column(column, overflow="fold")
    for name in sorted(ACTIONS):
        spec = ACTIONS[name]
        fields = [
            (info.alias or key) + ("" if info.is_required() else "?")
            for key, info in spec.model.model_fields.items()
        ]
        table.add_row(name, ", ".join(fields), spec.summary)
    console.print(table)


@app.command("run-action")
def run_action(
    step: Annotated[str, typer.Argument(metavar="JSON", help='e.g. {"action": "node.status"}')],
    lab: LabOpt = "default",
    home: HomeOpt = None,
    actor: ActorOpt = "trainee",
    as_json: JsonOpt = False,
) -> None:
    """Run one action written as JSON, exactly as a scenario's reference solution step."""
    try:
        parsed = json.loads(step)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("action"), str):
        raise typer.BadParameter('a step is an object with an "action" key', param_hint="JSON")
    name = parsed.pop("action")
    _perform(lab, home, actor, name, parsed, as_json)
