"""`python -m simlab.nodes.ris --config FILE` runs the RIS node."""

from __future__ import annotations

import sys

from simlab.common.lean_imports import leave_out_unused

if __name__ == "__main__":  # a node process, not a test importing this module
    leave_out_unused()  # before pydicom loads: see simlab.common.lean_imports

from simlab.common.node_runner import run_node
from simlab.common.ris_config import RisConfig
from simlab.nodes.ris.node import RisNode

if __name__ == "__main__":
    sys.exit(run_node("simlab RIS node", RisConfig, RisNode))
