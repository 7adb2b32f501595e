"""One trial at a time on one arm: which request may start one, which gives way, and the stop that ends
what runs (no ROS).

An action goal (`ExecuteInstruction`) takes the slot when it is free; a dry run started from the
`vla_r1/instruction` topic gives way to it (it is asked to stop and the goal waits up to
`preempt_wait_s`), so a flood of topic instructions never blocks goals. A topic instruction takes the
slot only when it is free. A stop (`vla_r1/stop`, a preempting goal) applies to what runs when it comes.
"""

from __future__ import annotations

import threading


class TrialSlot:
    def __init__(self, preempt_wait_s: float = 5.0) -> None:
        self.preempt_wait_s = preempt_wait_s
        self._busy = threading.Lock()
        self._stop = threading.Event()
        self._topic_run = False  # the running trial came from the topic: a goal may preempt it

    def take_for_goal(self) -> str:
        """'' once the slot is the goal's (held until `release`), else why the goal must be refused."""
        if not self._busy.acquire(blocking=False):
            if not self._topic_run:
                return "a trial is already running"
            self._stop.set()
            if not self._busy.acquire(timeout=self.preempt_wait_s):
                return "the topic instruction run did not stop"
        self._topic_run = False
        return ""

    def take_for_topic(self) -> bool:
        """Whether a topic instruction may run now (then the slot is its until `release`)."""
        if not self._busy.acquire(blocking=False):
            return False
        self._topic_run = True
        return True

    def begin(self) -> None:
        """The trial that holds the slot starts: a stop that came before it does not apply to it."""
        self._stop.clear()

    def release(self) -> None:
        self._topic_run = False
        self._busy.release()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._busy.locked()
