"""The topology map: every node of the lab as a card, by tier, with its health in colour AND text.

A card reads without colour: a glyph and a word ("● UP", "✖ DOWN") say the state, the colour
only repeats it. The map is built once from the first status (a lab's nodes do not change) and
updated in place afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, Static

STATE_TEXT = {
    "up": ("●", "UP"),
    "unhealthy": ("▲", "UNHEALTHY"),
    "down": ("✖", "DOWN"),
    "not started": ("○", "STOPPED"),
    "unknown": ("?", "…"),
}
"""Glyph and word for each `NodeStatus.state` (the word is what a screen reader and a
monochrome terminal see)."""

TIERS = [
    ("Modalities", ("modality",)),
    ("Network", ("network",)),
    ("RIS → PACS", ("ris", "pacs")),
    ("Reading", ("viewer",)),
]
"""Rows of the map, top to bottom: images flow from the modalities to the PACS and its viewer."""


@dataclass(frozen=True)
class NodeView:
    """One node as the map shows it (built from `NodeStatus`, or static in tests)."""

    node_id: str
    role: str
    ae_title: str | None = None
    state: str = "unknown"
    detail: str = ""


def _tier_of(role: str) -> int:
    for index, (_name, roles) in enumerate(TIERS):
        if role in roles:
            return index
    return len(TIERS) - 1


class NodeCard(Static, can_focus=True):
    """One node: id, AE title and its state as a glyph and a word."""

    DEFAULT_CSS = """
    NodeCard {
        width: auto;
        height: 1;
        padding: 0 1;
        margin: 0 1 0 0;
        background: $boost;
    }
    NodeCard:focus { background: $accent 40%; text-style: bold; }
    NodeCard.-up { color: $success; }
    NodeCard.-unhealthy { color: $warning; }
    NodeCard.-down, NodeCard.-not-started { color: $error; }
    """

    BINDINGS = [Binding("enter", "open", "Console", show=False)]

    class Opened(Message):
        """The trainee pressed Enter on a node card (the dashboard opens its console)."""

        def __init__(self, node_id: str) -> None:
            super().__init__()
            self.node_id = node_id

    def __init__(self, view: NodeView) -> None:
        super().__init__(id=f"node-{view.node_id}")
        self.view = view
        self.show(view)

    def show(self, view: NodeView) -> None:
        self.view = view
        glyph, word = STATE_TEXT.get(view.state, STATE_TEXT["unknown"])
        ae = f" {view.ae_title}" if view.ae_title else ""
        self.update(f"{glyph} {view.node_id}{ae} {word}")
        for state in STATE_TEXT:
            self.set_class(state == view.state, f"-{state.replace(' ', '-')}")
        self.tooltip = view.detail or None

    def action_open(self) -> None:
        self.post_message(self.Opened(self.view.node_id))


class TopologyMap(Vertical):
    """The lab's nodes by tier; `selected_node` is the card last focused (or the first)."""

    DEFAULT_CSS = """
    TopologyMap { height: auto; border: round $primary; padding: 0 1; }
    TopologyMap > Horizontal { height: 1; }
    TopologyMap .tier { width: 12; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Topology"
        self._cards: dict[str, NodeCard] = {}
        self.selected_node: str | None = None

    def compose(self) -> ComposeResult:
        yield Label("waiting for the first health check…", classes="tier-wait")

    def update_nodes(self, views: list[NodeView]) -> None:
        """Show these states; builds the cards the first time."""
        if not self._cards:
            self._build(views)
            return
        for view in views:
            card = self._cards.get(view.node_id)
            if card is not None:
                card.show(view)

    def _build(self, views: list[NodeView]) -> None:
        self.remove_children()
        rows: list[list[NodeView]] = [[] for _ in TIERS]
        for view in views:
            rows[_tier_of(view.role)].append(view)
        for (name, _roles), row in zip(TIERS, rows, strict=True):
            if not row:
                continue
            cards = [NodeCard(v) for v in row]
            for card in cards:
                self._cards[card.view.node_id] = card
            self.mount(Horizontal(Label(name, classes="tier"), *cards))
        if views and self.selected_node is None:
            self.selected_node = views[0].node_id

    @on(NodeCard.Opened)
    def _remember(self, event: NodeCard.Opened) -> None:
        self.selected_node = event.node_id

    def on_descendant_focus(self, event: object) -> None:
        focused = self.screen.focused
        if isinstance(focused, NodeCard):
            self.selected_node = focused.view.node_id

    def node_ids(self) -> list[str]:
        return list(self._cards)
