"""When a failed camera source is started again, and what `perception/status` says about it. No rclpy.

A source that raises (unplugged, stalled, a renderer that died) is stopped and started again after a
delay that doubles with each failure in a row, up to a maximum: a camera that is back in a second is
back in a second, and one that stays dead all night costs one attempt every `max_delay_s`, not a
busy loop. The count of failures in a row is forgotten only once the source has streamed for
`max_delay_s`: a camera that fails again right after each restart keeps backing off.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

STREAMING, RESTARTING, FINISHED = "streaming", "restarting", "finished"


@dataclass(frozen=True)
class Backoff:
    """Delay before restart number `n` of a series: `first_delay_s * 2**(n-1)`, at most `max_delay_s`."""

    first_delay_s: float = 0.5
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.first_delay_s) and self.first_delay_s > 0):
            raise ValueError(f"the first restart delay must be a positive number of seconds, got {self.first_delay_s}")
        if not (math.isfinite(self.max_delay_s) and self.max_delay_s >= self.first_delay_s):
            raise ValueError(
                f"the maximum restart delay ({self.max_delay_s} s) must be at least the first one "
                f"({self.first_delay_s} s)"
            )

    def delay_s(self, failures_in_a_row: int) -> float:
        # The exponent is capped: after ~60 doublings any delay is past the maximum anyway.
        return min(self.max_delay_s, self.first_delay_s * 2.0 ** min(failures_in_a_row - 1, 64))


class SourceRestarts:
    """The life of one camera source: streaming, restarting after a failure, or finished (a recording's end).

    Times are `time.monotonic()` seconds given by the caller. Thread-safe: the capture thread records,
    the status timer reports.
    """

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self._lock = threading.Lock()
        self._state = STREAMING
        self._restarts = 0  # times the source was started again after a failure
        self._last_error: str | None = None
        self._failures_in_a_row = 0
        self._restart_pending = False
        self._restart_at = 0.0
        self._streaming_since: float | None = None

    def failed(self, error: str, now: float) -> float:
        """The source raised (reading or starting): returns the seconds until it should be started again."""
        with self._lock:
            self._failures_in_a_row += 1
            self._last_error = error
            self._state = RESTARTING
            self._restart_pending = True
            self._streaming_since = None
            delay = self.backoff.delay_s(self._failures_in_a_row)
            self._restart_at = now + delay
            return delay

    def wait_s(self, now: float) -> float:
        """Seconds until the pending restart is due (0: now)."""
        with self._lock:
            return max(0.0, self._restart_at - now)

    def restarted(self) -> int:
        """The source started again; returns how many restarts there have been. It is `streaming` again
        only with its first frame: a started camera that stays silent is not back."""
        with self._lock:
            self._restart_pending = False
            self._restarts += 1
            return self._restarts

    def frame(self, now: float) -> None:
        with self._lock:
            if self._streaming_since is None:
                self._streaming_since = now
                self._state = STREAMING
            elif now - self._streaming_since >= self.backoff.max_delay_s:
                self._failures_in_a_row = 0

    @property
    def restart_pending(self) -> bool:
        """Failed and not started again yet."""
        with self._lock:
            return self._restart_pending

    def finished(self) -> None:
        with self._lock:
            self._state = FINISHED

    def report(self) -> dict[str, str | int | None]:
        with self._lock:
            return {"state": self._state, "restarts": self._restarts, "last_error": self._last_error}
