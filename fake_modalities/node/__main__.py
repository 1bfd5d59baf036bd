"""`python -m fake_modalities.node --config FILE` runs a fake modality node."""

from __future__ import annotations

import sys

from simlab.common.lean_imports import leave_out_unused

if __name__ == "__main__":  # a node process, not a test importing this module
    leave_out_unused()  # before pydicom loads: see simlab.common.lean_imports

from fake_modalities.node.node import ModalityNode
from simlab.common.modality_config import ModalityConfig
from simlab.common.node_runner import run_node

if __name__ == "__main__":
    sys.exit(run_node("simlab fake modality node", ModalityConfig, ModalityNode))
