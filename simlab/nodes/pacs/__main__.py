"""`python -m simlab.nodes.pacs --config FILE` runs the PACS node."""

from __future__ import annotations

import sys

from simlab.common.lean_imports import leave_out_unused

if __name__ == "__main__":  # a node process, not a test importing this module
    leave_out_unused()  # before pydicom loads: see simlab.common.lean_imports

from simlab.common.config import PacsConfig
from simlab.common.node_runner import run_node
from simlab.nodes.pacs.node import PacsNode

if __name__ == "__main__":
    sys.exit(run_node("simlab PACS node", PacsConfig, PacsNode))
