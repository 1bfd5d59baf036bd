"""The screenshots in docs/ are the TUI's snapshot tests' SVGs, byte for byte: when a screen
changes, `pytest --snapshot-update` updates the snapshot and this test names the doc image to
copy, so the docs never show an old screen."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAPSHOTS = REPO / "tests" / "__snapshots__"
SCREENSHOTS = {
    "tui-catalog.svg": "test_tui_snapshots/test_catalog_snapshot.svg",
    "tui-dashboard.svg": "test_tui_snapshots/test_dashboard_snapshot.svg",
    "tui-dashboard-light.svg": "test_tui_snapshots/test_dashboard_snapshot_in_the_light_theme.svg",
    "tui-console.svg": "test_tui_console/test_console_snapshot_at_80x24.svg",
    "tui-dicom-toolbox.svg": "test_tui_toolboxes/test_dicom_toolbox_snapshot.svg",
    "tui-hl7-toolbox.svg": "test_tui_toolboxes/test_hl7_toolbox_snapshot.svg",
    "tui-report.svg": "test_tui_snapshots/test_report_snapshot.svg",
}
"""docs/images/<name> ← tests/__snapshots__/<snapshot>."""


@pytest.mark.timeout(10)
@pytest.mark.parametrize("image", sorted(SCREENSHOTS))
def test_each_doc_screenshot_is_the_current_snapshot(image: str) -> None:
    doc, snapshot = REPO / "docs" / "images" / image, SNAPSHOTS / SCREENSHOTS[image]
    assert snapshot.exists(), f"no snapshot {snapshot}"
    assert doc.exists() and doc.read_bytes() == snapshot.read_bytes(), (
        f"docs/images/{image} is not the current snapshot: cp {snapshot} {doc}"
    )


@pytest.mark.timeout(10)
def test_the_trainee_guide_and_the_readme_show_the_screenshots() -> None:
    guide = (REPO / "docs" / "trainee.md").read_text(encoding="utf-8")
    missing = [name for name in SCREENSHOTS if f"(images/{name})" not in guide]
    assert missing == [], f"docs/trainee.md does not show {missing}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/images/tui-catalog.svg)" in readme
    assert "(docs/images/tui-dashboard.svg)" in readme
