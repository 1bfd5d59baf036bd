"""The tabs of a node console: config, AE table, studies, queue, log.

Each pane reads and changes the node through a ConsoleBackend, always in a thread worker (the
console never freezes on a slow or dead node); failures come back as notifications. A pane
loads when its tab is first shown and again on refresh. The screen owns the key bindings and
calls the active pane's `action_<name>` (apply, add, edit, remove, retry, retry_all,
toggle_follow, search) when it has one.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import (
    Button,
    DataTable,
    Input,
    Label,
    Log,
    Static,
    Switch,
    TextArea,
    Tree,
)
from textual.widgets.tree import TreeNode

from simlab.tui.widgets.confirm import ConfirmModal
from simlab.tui.widgets.console_backend import (
    ConsoleBackend,
    ConsoleError,
    describe_failure,
    merge_patch,
)
from simlab.tui.widgets.console_modals import (
    AeEditModal,
    DiffModal,
    QueueEditModal,
    StudyEditModal,
)
from simlab.workflow.actions import ActionResult

T = TypeVar("T")

LOG_LINES = 500
"""How much of the node log the Logs tab reads."""
FOLLOW_INTERVAL = 1.0
"""Seconds between two reads of the log in follow mode."""


class ConsolePane(Vertical):
    """Base of a console tab: a backend, a lazy first load, and jobs in thread workers."""

    def __init__(self, backend: ConsoleBackend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.loaded = False

    def ensure_loaded(self) -> None:
        if not self.loaded:
            self.loaded = True
            self.reload()

    def reload(self) -> None:
        """Read the node again (subclasses)."""

    def job(
        self,
        what: str,
        fn: Callable[[], T],
        done: Callable[[T], None] | None = None,
        exclusive: bool = True,
    ) -> None:
        """Run `fn` in a thread worker; `done(value)` on the UI thread; errors as notifications."""

        def run() -> None:
            try:
                value = fn()
            except ConsoleError as exc:
                self.app.call_from_thread(self.notify, f"{what}: {exc}", severity="error")
                return
            except Exception as exc:  # a console shows every failure, it never crashes
                text = f"{what}: {type(exc).__name__}: {exc}"
                self.app.call_from_thread(self.notify, text, severity="error")
                return
            if done is not None:
                self.app.call_from_thread(self._deliver, done, value)

        self.run_worker(run, thread=True, group=what, exclusive=exclusive, name=what)

    def _deliver(self, done: Callable[[T], None], value: T) -> None:
        """Show a node's answer, unless the console closed while the node was answering (its
        widgets are being removed: the answer has nowhere to go, which is not an error)."""
        if not self.is_attached:
            return
        try:
            done(value)
        except NoMatches:
            # Textual prunes a closing screen's widgets children first; there is no public
            # flag for "being removed" (the same private ones DOMNode.display reads).
            if self._pruning or self._closing or self._closed or not self.is_attached:
                return
            raise

    def act(
        self,
        what: str,
        fn: Callable[[], ActionResult],
        after: Callable[[ActionResult], None] | None = None,
        failed: Callable[[ActionResult], None] | None = None,
    ) -> None:
        """Run an action in a worker; notify its outcome; `after` on success, `failed` if not."""

        def done(result: ActionResult) -> None:
            if result.ok:
                self.notify(result.text, title=what)
                if after is not None:
                    after(result)
            else:
                self.notify("\n".join(describe_failure(result)), title=what, severity="error")
                if failed is not None:
                    failed(result)

        self.job(what, fn, done, exclusive=False)


# ------------------------------------------------------------------------------------- config
class ConfigPane(ConsolePane):
    """The node's config as JSON: edit, see the diff, apply (the node validates)."""

    def __init__(self, backend: ConsoleBackend, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.original: dict[str, Any] | None = None

    def compose(self) -> Any:
        yield TextArea.code_editor("", language="json", id="config-text", soft_wrap=False)
        yield Static("", id="config-error", classes="pane-error")
        with Horizontal(classes="pane-buttons"):
            yield Button("Apply…", id="config-apply", variant="warning")
            yield Button("Revert", id="config-reload")

    def reload(self) -> None:
        self.job("read config", self.backend.config, self.show_config)

    def show_config(self, config: dict[str, Any]) -> None:
        self.original = config
        self.query_one("#config-text", TextArea).load_text(json.dumps(config, indent=2))
        self.query_one("#config-error", Static).update("")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "config-apply":
            self.action_apply()
        elif event.button.id == "config-reload":
            self.reload()

    def show_error(self, lines: list[str]) -> None:
        self.query_one("#config-error", Static).update("\n".join(lines))

    def action_apply(self) -> None:
        if self.original is None:
            self.notify("the config is not loaded yet", severity="warning")
            return
        text = self.query_one("#config-text", TextArea).text
        try:
            new = json.loads(text)
        except json.JSONDecodeError as exc:
            self.show_error([f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"])
            return
        if not isinstance(new, dict):
            self.show_error(["the config is a JSON object { … }"])
            return
        if new == self.original:
            self.notify("nothing to apply: the config is unchanged")
            return
        diff = config_diff(self.original, new)
        old = self.original

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.show_error([])
                self.act(
                    "apply config",
                    lambda: self.backend.config_patch(merge_patch(old, new)),
                    after=lambda _r: self.reload(),
                    failed=lambda r: self.show_error(describe_failure(r)),
                )

        self.app.push_screen(DiffModal(diff, f"Apply to {self.backend.node_id}?"), confirmed)


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A unified diff of two configs as indented JSON."""
    return "\n".join(
        difflib.unified_diff(
            json.dumps(old, indent=2).splitlines(),
            json.dumps(new, indent=2).splitlines(),
            "running",
            "edited",
            lineterm="",
        )
    )


# ------------------------------------------------------------------------------------ AE table
class AePane(ConsolePane):
    """The AE table: the peers the node knows."""

    def __init__(self, backend: ConsoleBackend, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> Any:
        table: DataTable[str] = DataTable(id="ae-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("AE title", "Host", "Port", "Description")
        yield table
        with Horizontal(classes="pane-buttons"):
            yield Button("Add", id="ae-add")
            yield Button("Edit", id="ae-edit")
            yield Button("Remove", id="ae-remove", variant="error")

    def reload(self) -> None:
        self.job("read AE table", self.backend.ae_rows, self.show_rows)

    def show_rows(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        table = self.query_one("#ae-table", DataTable)
        table.clear()
        for r in rows:
            table.add_row(
                r["ae_title"],
                r["host"],
                str(r["port"]),
                r.get("description") or "",
                key=r["ae_title"],
            )

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one("#ae-table", DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.rows if r["ae_title"] == key), None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {"ae-add": self.action_add, "ae-edit": self.action_edit, "ae-remove": self.action_remove}[
            event.button.id or "ae-add"
        ]()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_edit()

    def _save(self, row: dict[str, Any] | None) -> None:
        if row is not None:
            self.act("save AE", lambda: self.backend.ae_put(row), after=lambda _r: self.reload())

    def action_add(self) -> None:
        self.app.push_screen(AeEditModal(), self._save)

    def action_edit(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("select an AE first", severity="warning")
            return
        self.app.push_screen(AeEditModal(row), self._save)

    def action_remove(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("select an AE first", severity="warning")
            return
        title = row["ae_title"]

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.act(
                    "remove AE",
                    lambda: self.backend.ae_delete(title),
                    after=lambda _r: self.reload(),
                )

        question = f"Remove {title} ({row['host']}:{row['port']}) from the AE table?"
        self.app.push_screen(ConfirmModal(question, "Remove", danger=True), confirmed)


# ------------------------------------------------------------------------------------- studies
def study_label(st: dict[str, Any]) -> str:
    """'20250101  acc ACC1  CT  CT HEAD  (3 img)' from a PACS or a viewer study row (the viewer
    says study_description and instances where the PACS says description and instance_count)."""
    count = st.get("instance_count", st.get("instances", "?"))
    return "  ".join(
        p
        for p in (
            st.get("study_date") or "-",
            f"acc {st.get('accession') or '-'}",
            "/".join(st.get("modalities") or []),
            st.get("description") or st.get("study_description") or "",
            f"({count} img)",
        )
        if p
    )


def series_of(detail: dict[str, Any]) -> list[dict[str, Any]]:
    """A study's series, each with its instances (sop_uid, number), whichever node answered:
    the PACS nests the instances in each series; the viewer lists them once for the study
    (`instance_list`, with series_uid and instance_number) and counts them per series."""
    out = []
    flat = detail.get("instance_list") or []
    for se in detail.get("series", []):
        instances = se.get("instances")
        if not isinstance(instances, list):
            instances = [
                {**i, "number": i.get("instance_number", "")}
                for i in flat
                if i.get("series_uid") == se.get("series_uid")
            ]
        out.append(
            {
                **se,
                "number": se.get("number", se.get("series_number")),
                "description": se.get("description", se.get("series_description")),
                "instances": instances,
            }
        )
    return out


class StudiesPane(ConsolePane):
    """Patient → study → series → instance, and the tags of the selected instance."""

    def __init__(self, backend: ConsoleBackend, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.dump_lines: list[str] = []

    def compose(self) -> Any:
        with Horizontal(id="studies-split"):
            tree: Tree[dict[str, Any]] = Tree("studies", id="studies-tree")
            tree.show_root = False
            yield tree
            with Vertical(id="tags-box"):
                yield Label("Tags (select an instance)", id="tags-title")
                yield Log(id="tags", highlight=False)

    def reload(self) -> None:
        self.job("read studies", self.backend.studies, self.show_studies)

    def show_studies(self, studies: list[dict[str, Any]]) -> None:
        tree = self.query_one("#studies-tree", Tree)
        tree.clear()
        patients: dict[tuple[str, str], TreeNode[dict[str, Any]]] = {}
        for st in sorted(studies, key=lambda s: (s.get("patient_name") or "", s["study_uid"])):
            key = (st.get("patient_id") or "", st.get("issuer") or "")
            if key not in patients:
                label = f"{st.get('patient_name') or '(no name)'}  {key[0] or '(no id)'}"
                if key[1]:
                    label += f" [{key[1]}]"
                patients[key] = tree.root.add(label, {"kind": "patient"}, expand=True)
            node = patients[key].add(
                study_label(st), {"kind": "study", "study": st, "loaded": False}
            )
            node.allow_expand = True
        if not studies:
            tree.root.add_leaf("(no studies)", {"kind": "none"})

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[dict[str, Any]]) -> None:
        event.stop()
        data = event.node.data or {}
        if data.get("kind") == "study" and not data.get("loaded"):
            data["loaded"] = True
            uid = data["study"]["study_uid"]
            node = event.node
            self.job(
                f"read study {uid}", lambda: self.backend.study(uid), lambda d: self._fill(node, d)
            )

    def _fill(self, node: TreeNode[dict[str, Any]], detail: dict[str, Any]) -> None:
        node.remove_children()
        for se in series_of(detail):
            count = len(se.get("instances", []))
            label = (
                f"series {se.get('number') or '?'}  {se.get('modality') or ''}  "
                f"{se.get('description') or ''}  ({count})"
            )
            snode = node.add(label, {"kind": "series", "series": se}, expand=True)
            for inst in se.get("instances", []):
                snode.add_leaf(
                    f"#{inst.get('number') or '?'}  {inst['sop_uid']}",
                    {"kind": "instance", "instance": inst},
                )
        node.expand()

    def on_tree_node_selected(self, event: Tree.NodeSelected[dict[str, Any]]) -> None:
        event.stop()
        data = event.node.data or {}
        if data.get("kind") == "instance":
            uid = data["instance"]["sop_uid"]
            self.job(
                "read tags",
                lambda: self.backend.dump(uid),
                lambda lines: self.show_tags(uid, lines),
            )

    def show_tags(self, sop_uid: str, lines: list[str]) -> None:
        self.dump_lines = lines
        self.query_one("#tags-title", Label).update(f"Tags of {sop_uid}")
        log = self.query_one("#tags", Log)
        log.clear()
        log.write_lines(lines)
        log.scroll_home(animate=False)

    def selected_study(self) -> dict[str, Any] | None:
        node = self.query_one("#studies-tree", Tree).cursor_node
        while node is not None:
            data = node.data or {}
            if data.get("kind") == "study":
                return dict(data["study"])
            node = node.parent
        return None

    def action_remove(self) -> None:
        study = self.selected_study()
        if study is None:
            self.notify("select a study first", severity="warning")
            return
        uid = study["study_uid"]

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.act(
                    "delete study",
                    lambda: self.backend.study_delete(uid),
                    after=lambda _r: self.reload(),
                )

        question = (
            f"Delete study {uid} of {study.get('patient_name') or '?'} "
            f"({study.get('instance_count', study.get('instances', '?'))} instances)? "
            "Its files are removed."
        )
        self.app.push_screen(ConfirmModal(question, "Delete", danger=True), confirmed)

    def action_edit(self) -> None:
        study = self.selected_study()
        if study is None:
            self.notify("select a study first", severity="warning")
            return
        uid = study["study_uid"]

        def save(tags: dict[str, str] | None) -> None:
            if tags:
                self.act(
                    "edit study",
                    lambda: self.backend.study_edit(uid, tags),
                    after=lambda _r: self.reload(),
                )

        self.app.push_screen(StudyEditModal(study), save)


# --------------------------------------------------------------------------------------- queue
class QueuePane(ConsolePane):
    """The outbound queue: RIS HL7 messages with their ACKs, or a modality's images to send."""

    def __init__(self, backend: ConsoleBackend, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.items: list[dict[str, Any]] = []
        self.ris = backend.role == "ris"

    def compose(self) -> Any:
        table: DataTable[str] = DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        if self.ris:
            table.add_columns("Id", "Dest", "Type", "State", "Tries", "ACK", "ACK text / error")
        else:
            table.add_columns("Id", "Procedure", "State", "Tries", "Status", "Reason")
        yield table
        with Horizontal(classes="pane-buttons"):
            yield Button("Retry", id="queue-retry")
            yield Button("Retry all failed", id="queue-retry-all")
            if self.ris:
                yield Button("Edit", id="queue-edit")
            yield Button("Delete", id="queue-delete", variant="error")

    def reload(self) -> None:
        self.job("read queue", self.backend.queue, self.show_items)

    def show_items(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        table = self.query_one("#queue-table", DataTable)
        table.clear()
        for it in items:
            if self.ris:
                ack = it.get("ack_code") or ""
                if it.get("ack_error_code"):
                    ack += f" {it['ack_error_code']}"
                cells = [
                    str(it["id"]),
                    str(it.get("destination", "")),
                    str(it.get("type", "")),
                    str(it.get("state", "")),
                    str(it.get("attempts", "")),
                    ack,
                    str(it.get("ack_text") or it.get("last_error") or ""),
                ]
            else:
                cells = [
                    str(it["id"]),
                    str(it.get("procedure_id", "")),
                    str(it.get("state", "")),
                    str(it.get("attempts", "")),
                    str(it.get("status") or ""),
                    str(it.get("reason") or ""),
                ]
            table.add_row(*cells, key=str(it["id"]))

    def selected_id(self) -> int | None:
        table = self.query_one("#queue-table", DataTable)
        if not self.items or not 0 <= table.cursor_row < len(self.items):
            self.notify("select a queue entry first", severity="warning")
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return int(key) if key is not None else None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        handlers = {
            "queue-retry": self.action_retry,
            "queue-retry-all": self.action_retry_all,
            "queue-edit": self.action_edit,
            "queue-delete": self.action_remove,
        }
        handlers[event.button.id or "queue-retry"]()

    def action_retry(self) -> None:
        entry = self.selected_id()
        if entry is not None:
            self.act(
                "retry", lambda: self.backend.queue_retry(entry), after=lambda _r: self.reload()
            )

    def action_retry_all(self) -> None:
        self.act(
            "retry all", lambda: self.backend.queue_retry(None), after=lambda _r: self.reload()
        )

    def action_edit(self) -> None:
        if not self.ris:
            self.notify("images in a send queue cannot be edited; retry or delete them")
            return
        entry = self.selected_id()
        if entry is None:
            return

        def save(message: str | None) -> None:
            if message is not None:
                self.act(
                    "edit message",
                    lambda: self.backend.queue_edit(entry, message),
                    after=lambda _r: self.reload(),
                )

        def opened(item: dict[str, Any]) -> None:
            self.app.push_screen(QueueEditModal(entry, str(item.get("message", ""))), save)

        self.job("read queue entry", lambda: self.backend.queue_entry(entry), opened)

    def action_remove(self) -> None:
        entry = self.selected_id()
        if entry is None:
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.act(
                    "delete entry",
                    lambda: self.backend.queue_delete(entry),
                    after=lambda _r: self.reload(),
                )

        question = f"Delete queue entry {entry}? It will never be sent."
        self.app.push_screen(ConfirmModal(question, "Delete", danger=True), confirmed)


# ----------------------------------------------------------------------------------------- log
class LogPane(ConsolePane):
    """The end of the node log: filter as you type, follow (poll every second)."""

    def __init__(self, backend: ConsoleBackend, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.lines: list[str] = []
        self.shown: list[str] = []
        self._timer: Timer | None = None

    def compose(self) -> Any:
        with Horizontal(id="log-bar"):
            yield Input(placeholder="filter (text in the line)…", id="log-filter")
            yield Label("follow", id="follow-label")
            yield Switch(False, id="log-follow")
        yield Log(id="log-view", highlight=False)

    @property
    def following(self) -> bool:
        return self._timer is not None

    def reload(self) -> None:
        self.job("read log", lambda: self.backend.log(LOG_LINES, True), self.show_lines)

    def poll(self) -> None:
        self.job("follow log", lambda: self.backend.log(LOG_LINES, False), self.show_lines)

    def show_lines(self, lines: list[str]) -> None:
        if lines == self.lines and self.shown:
            return
        self.lines = lines
        self.apply_filter()

    def apply_filter(self) -> None:
        needle = self.query_one("#log-filter", Input).value.strip().lower()
        self.shown = [ln for ln in self.lines if needle in ln.lower()] if needle else self.lines
        view = self.query_one("#log-view", Log)
        view.clear()
        view.write_lines(self.shown)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.apply_filter()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self.set_follow(event.value)

    def set_follow(self, on: bool) -> None:
        if on and self._timer is None:
            self._timer = self.set_interval(FOLLOW_INTERVAL, self.poll)
            self.poll()
        elif not on and self._timer is not None:
            self._timer.stop()
            self._timer = None
        switch = self.query_one("#log-follow", Switch)
        if switch.value != on:
            switch.value = on

    def action_toggle_follow(self) -> None:
        self.set_follow(not self.following)

    def action_search(self) -> None:
        self.query_one("#log-filter", Input).focus()

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()
