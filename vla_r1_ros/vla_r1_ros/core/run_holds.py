"""When a run of trials must wait, and what the operator is told: pure functions over the statuses the
graph publishes (`planning/status`, `perception/status`, both JSON), no ROS.

A run holds its next trial while the planning node refuses goals (no logger, too many records waiting
to be logged) or while the camera is not streaming (restarting after a failure, a recording that has
ended): a trial started then could only fail, and would be counted as the policy's failure. A status
never received says nothing (a RealSense driver publishes no `perception/status`): it holds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Status = Mapping[str, Any] | None


def hold_reason(planning: Status, perception: Status) -> str:
    """Why the next trial must not start now ("" when it may)."""
    if planning and planning.get("refusal"):
        return f"the planning node refuses trials: {planning['refusal']}"
    if perception and perception.get("state", "streaming") != "streaming":
        error = perception.get("last_error") or "no error reported"
        restarts = perception.get("restarts", 0)
        return (
            f"the camera ({perception.get('source', '?')}) is {perception['state']} after {restarts} restarts: {error}"
        )
    return ""


def logging_alert(planning: Status) -> str:
    """What keeps finished trials from the log right now ("" when nothing waits): the logger's own
    answer (disk full, directory not writable, no logger), for the console at once."""
    if not planning or not planning.get("undelivered"):
        return ""
    waiting = int(planning["undelivered"])
    cause = planning.get("log_error") or "the reward logger has not confirmed them"
    # Not spooled: a planning process that dies now loses them, and the operator must know that.
    memory_only = f" in memory only ({planning['spool_error']})" if planning.get("spool_error") else ""
    return (
        f"episodes are not being logged: {cause} — {waiting} finished trial{'s' if waiting != 1 else ''} "
        f"kept by the planning node{memory_only}, logged automatically once the logger can write"
    )
