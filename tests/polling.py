"""Poll with a deadline: wait for an event seen through a real surface, never sleep blind."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
    *,
    fail: bool = True,
) -> T:
    """Call `fetch` until `done(value)`; after `timeout` seconds fail with the last value (or,
    with fail=False, return it for the caller to assert on with a better message)."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value):
        if time.monotonic() > deadline:
            if not fail:
                return value
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")
        time.sleep(interval)
        value = fetch()
    return value
