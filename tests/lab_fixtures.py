"""A running department lab for fault and scenario tests, and its fault manager.

Import the fixtures into a test module (`from tests.lab_fixtures import fault_lab, faults`);
`fault_lab` is module-scoped (one department boot per test file), so every fault test must
revert what it injected; `faults` reverts anything a failing test left active.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from simlab.faults.manager import FaultManager
from simlab.runtime.lab import Lab


@contextlib.contextmanager
def running_lab(tmp_path_factory: pytest.TempPathFactory, lab_id: str) -> Iterator[Lab]:
    """A default department, up, in a fresh home; stopped on the way out, whatever happened."""
    lab = Lab.create(tmp_path_factory.mktemp("home"), lab_id)
    try:
        lab.up(timeout=60)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def fault_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "faults") as lab:
        yield lab


@pytest.fixture
def faults(fault_lab: Lab) -> Iterator[FaultManager]:
    manager = FaultManager(fault_lab, seed=7)
    try:
        yield manager
    finally:
        for record in reversed(manager.active()):
            manager.revert(record.fault_id, actor="test-teardown")
