"""The footer of every screen: Textual's, packed closer below 100 columns.

At 80x24 the normal footer's padding pushes the last bindings (and the palette key) off the
row; the compact footer shows them all. The screen's width decides, on mount and on resize.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Footer

NARROW = 100
"""Below this many columns the footer is compact."""


class AdaptiveFooter(Footer):
    """A Footer that turns compact on a narrow terminal."""

    def on_mount(self) -> None:
        self.compact = self.app.size.width < NARROW

    def on_resize(self, event: events.Resize) -> None:
        self.compact = self.app.size.width < NARROW
