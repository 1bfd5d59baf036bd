"""`python -m fake_modalities.node --config FILE` runs a fake modality node."""

from __future__ import annotations

import sys

from fake_modalities.node.node import ModalityNode
from simlab.common.modality_config import ModalityConfig
from simlab.common.node_runner import run_node

if __name__ == "__main__":
    sys.exit(run_node("simlab fake modality node", ModalityConfig, ModalityNode))
