"""Waiting on rclpy futures and sending action goals with retry: the one copy the planning node (its
Predict goals) and the trial client (ExecuteInstruction goals) share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rclpy.action import ActionClient


def wait_future(future: Any, timeout_s: float, should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Wait for a future, giving up early when `should_stop` says so. True when it is done."""
    done = threading.Event()
    future.add_done_callback(lambda _future: done.set())
    deadline = time.monotonic() + timeout_s
    while not done.wait(max(0.0, min(0.05, deadline - time.monotonic()))):
        if should_stop() or time.monotonic() >= deadline:
            break
    return future.done()


def send_goal_with_retry(
    client: ActionClient,
    goal: Any,
    accept_wait_s: float,
    sends: int,
    feedback_callback: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    cancel_duplicates: bool = False,
) -> Any | None:
    """The goal's handle (accepted or rejected), or None when none of `sends` goals was answered or
    `should_stop` said so. A goal request can be lost while DDS discovery is still matching the server's
    reader to this client (the server looks ready, the request goes nowhere), and rclpy can lose a goal
    response: a goal unanswered after `accept_wait_s` is sent again, and the first acceptance wins.
    `cancel_duplicates`: a copy accepted after the winner is cancelled, so that the server does not do
    the work twice (Predict). ExecuteInstruction needs none: the planning node refuses a second trial."""
    sent: list[Any] = []
    for _attempt in range(sends):
        sent.append(client.send_goal_async(goal, feedback_callback=feedback_callback))
        deadline = time.monotonic() + accept_wait_s
        while time.monotonic() < deadline and not should_stop():
            answered = [future.result() for future in sent if future.done()]
            accepted = [handle for handle in answered if handle.accepted]
            if accepted or len(answered) == len(sent):
                chosen = accepted[0] if accepted else answered[0]
                if cancel_duplicates:
                    for future in sent:
                        future.add_done_callback(lambda f, winner=chosen: _cancel_if_duplicate(f.result(), winner))
                return chosen
            time.sleep(0.02)
        if should_stop():
            return None
    return None


def _cancel_if_duplicate(handle: Any, chosen: Any) -> None:
    if handle is not None and handle is not chosen and handle.accepted:
        handle.cancel_goal_async()
