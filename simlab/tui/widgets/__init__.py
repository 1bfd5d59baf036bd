"""Widgets of the simlab TUI."""
