"""Small helpers for tests and tools that drive real rclpy nodes."""

from __future__ import annotations

import time
from collections.abc import Callable

from rclpy.executors import Executor


def spin_until(executor: Executor, predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> bool:
    """Spin `executor` until `predicate()` is true or `timeout_s` passes; returns the predicate's last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step_s)
    return predicate()
