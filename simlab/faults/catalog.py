"""The fault catalog: every registered fault class, found by importing the family modules."""

from __future__ import annotations

import importlib
import pkgutil

from simlab.faults import families
from simlab.faults.base import FAULT_TYPES, Fault


def load_catalog() -> dict[str, type[Fault]]:
    """Import every module of `simlab.faults.families` (each registers its faults); by kind."""
    for info in pkgutil.iter_modules(families.__path__):
        importlib.import_module(f"{families.__name__}.{info.name}")
    return dict(sorted(FAULT_TYPES.items()))


def fault_class(kind: str) -> type[Fault]:
    catalog = load_catalog()
    try:
        return catalog[kind]
    except KeyError:
        raise KeyError(f"unknown fault type {kind!r}") from None
