"""Idle nodes stay cheap (issue 8): what a node process must not import at start-up.

The network node has no DICOM, so it must not load pydicom/pynetdicom (with numpy, about 30 MB a
process); the DICOM nodes leave out `requests`, which pydicom loads only to download its example
files (simlab.common.lean_imports). Each check runs the node's `__main__` with --help in a fresh
interpreter, the way the runtime starts it, and lists what got imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, runpy, sys
sys.argv = ["node", "--help"]
try:
    runpy.run_module(sys.argv_module, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))
"""


def imported_by(module: str) -> set[str]:
    code = PROBE.replace("sys.argv_module", repr(module))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_network_node_loads_no_dicom_stack() -> None:
    loaded = imported_by("simlab.nodes.proxy")
    assert not {"pydicom", "pynetdicom", "numpy", "requests"} & loaded


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "module",
    ["simlab.nodes.pacs", "simlab.nodes.ris", "simlab.nodes.viewer", "fake_modalities.node"],
)
def test_dicom_nodes_leave_out_requests(module: str) -> None:
    loaded = imported_by(module)
    assert "pynetdicom" in loaded
    assert "requests" not in loaded and "urllib3" not in loaded
