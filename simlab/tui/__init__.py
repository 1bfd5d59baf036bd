"""The Textual TUI: the trainee console, node consoles, toolboxes, report and instructor view."""
