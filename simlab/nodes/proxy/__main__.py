"""`python -m simlab.nodes.proxy --config FILE` runs the department network node."""

from __future__ import annotations

import sys

from simlab.common.node_runner import run_node
from simlab.common.proxy_config import ProxyConfig
from simlab.nodes.proxy.node import ProxyNode

if __name__ == "__main__":
    sys.exit(run_node("simlab network node", ProxyConfig, ProxyNode))
