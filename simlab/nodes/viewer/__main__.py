"""`python -m simlab.nodes.viewer --config FILE` runs the viewer node."""

from __future__ import annotations

import sys

from simlab.common.lean_imports import leave_out_unused

if __name__ == "__main__":  # a node process, not a test importing this module
    leave_out_unused()  # before pydicom loads: see simlab.common.lean_imports

from simlab.common.node_runner import run_node
from simlab.common.viewer_config import ViewerConfig
from simlab.nodes.viewer.node import ViewerNode

if __name__ == "__main__":
    sys.exit(run_node("simlab viewer node", ViewerConfig, ViewerNode))
