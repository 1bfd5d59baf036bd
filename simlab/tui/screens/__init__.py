"""Screens of the simlab TUI."""
