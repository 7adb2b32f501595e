"""The approximate-time rule for one camera frame set, written once (as `message_filters`'
ApproximateTimeSynchronizer matches messages: one message per stream, all stamps within `slop`).

A trial takes the FIRST complete set captured at or after its start: every stream's message is stamped
at or after `not_before_ns`, and the stamps of the set span at most `slop_ns`. The aligned colour, depth
and camera info of one RealSense (or simulator) frame share one stamp, so a small slop never pairs a
frame with its neighbour. No ROS here: messages are opaque, the caller gives their stamps.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any


class FrameSetSync:
    """Per-stream queues of (stamp_ns, message); `wait_for_set` blocks until a matching set exists."""

    def __init__(self, streams: Sequence[str], queue_size: int = 10, slop_ns: int = 15_000_000):
        self.streams = tuple(streams)
        self.slop_ns = int(slop_ns)
        self._queues: dict[str, deque[tuple[int, Any]]] = {s: deque(maxlen=queue_size) for s in self.streams}
        self._changed = threading.Condition()

    def add(self, stream: str, stamp_ns: int, msg: Any) -> None:
        with self._changed:
            self._queues[stream].append((int(stamp_ns), msg))
            self._changed.notify_all()

    def newest_stamp(self, stream: str) -> int | None:
        with self._changed:
            queue = self._queues[stream]
            return queue[-1][0] if queue else None

    def missing_set_reason(self, not_before_ns: int) -> str:
        """Why no set captured after `not_before_ns` exists: how old each stream's newest message is."""
        newest = {stream: self.newest_stamp(stream) for stream in self.streams}
        return ", ".join(
            f"{stream}: none" if stamp is None else f"{stream}: {(not_before_ns - stamp) / 1e9:+.2f} s before the goal"
            for stream, stamp in newest.items()
        )

    def _first_set(self, not_before_ns: int) -> dict[str, Any] | None:
        """The earliest complete set with every stamp >= not_before_ns and a span <= slop, else None."""
        candidates = [[item for item in self._queues[s] if item[0] >= not_before_ns] for s in self.streams]
        best: tuple[int, tuple[tuple[int, Any], ...]] | None = None
        for combo in itertools.product(*candidates):
            stamps = [stamp for stamp, _ in combo]
            if max(stamps) - min(stamps) <= self.slop_ns and (best is None or max(stamps) < best[0]):
                best = (max(stamps), combo)
        if best is None:
            return None
        return {stream: msg for stream, (_, msg) in zip(self.streams, best[1], strict=True)}

    def wait_for_set(self, not_before_ns: int, timeout_s: float) -> dict[str, Any] | None:
        """The first set captured at or after `not_before_ns` (see `_first_set`), once one exists; None
        when none does within `timeout_s` (0: only what has arrived already)."""
        found: dict[str, Any] | None = None

        def ready() -> bool:
            nonlocal found
            found = self._first_set(not_before_ns)
            return found is not None

        with self._changed:
            self._changed.wait_for(ready, timeout=timeout_s)
        return found
