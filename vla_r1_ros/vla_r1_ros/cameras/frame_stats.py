"""Frame-quality bookkeeping for a camera stream (stale, dropped, timed-out frames, publish rate) and the
publish-rate limiter. Plain Python, no rclpy.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class FrameCounts:
    received: int = 0  # frames the source delivered
    published: int = 0
    skipped: int = 0  # delivered but not published, to hold the publish rate (by design, not a loss)
    stale: int = 0  # older than max_age_s when received
    dropped: int = 0  # missing from the source's frame sequence
    timeouts: int = 0  # reads that returned no frame in time


class FrameStats:
    """Counts a stream's frames; a frame older than `max_age_s` when it arrives is stale.

    Thread-safe: the capture thread records, a ROS timer reports.
    """

    def __init__(self, max_age_s: float, clock=time.monotonic) -> None:
        self.max_age_s = max_age_s
        self._clock = clock  # of the rate window
        self._counts = FrameCounts()
        self._lock = threading.Lock()
        self._last_sequence: int | None = None
        self._last_age_s: float | None = None
        self._rate_since = (clock(), 0)  # (when, published count then) for the rate window

    def frame(self, sequence: int, stamp_ns: int, now_ns: int) -> None:
        """A frame arrived from the source; `now_ns` on the clock of its stamps."""
        with self._lock:
            counts = self._counts
            counts.received += 1
            # A sequence that does not increase means the source restarted (reconnect, looped recording).
            if self._last_sequence is not None and sequence > self._last_sequence + 1:
                counts.dropped += sequence - self._last_sequence - 1
            self._last_sequence = sequence
            self._last_age_s = (now_ns - stamp_ns) * 1e-9
            if self._last_age_s > self.max_age_s:
                counts.stale += 1

    def published(self) -> None:
        with self._lock:
            self._counts.published += 1

    def skipped(self) -> None:
        with self._lock:
            self._counts.skipped += 1

    def timeout(self) -> None:
        with self._lock:
            self._counts.timeouts += 1

    def report(self) -> dict[str, float | int | None]:
        """Counts since start, the age of the newest frame, and the publish rate since the last report."""
        with self._lock:
            now = self._clock()
            since, published_then = self._rate_since
            rate = (self._counts.published - published_then) / (now - since) if now > since else 0.0
            self._rate_since = (now, self._counts.published)
            return {
                **vars(self._counts),
                "rate_hz": round(rate, 2),
                "last_age_s": None if self._last_age_s is None else round(self._last_age_s, 4),
            }


class RateLimiter:
    """Lets frames through at most `rate_hz` on average (0: all), on a steady schedule.

    A frame up to a quarter period early still passes: a 30 Hz camera's frames jitter around the
    33.3 ms period, and a strict "period elapsed" test would let only every other one through.
    """

    def __init__(self, rate_hz: float) -> None:
        self._period_ns = int(1e9 / rate_hz) if rate_hz > 0 else 0
        self._next_ns: int | None = None

    def wait_s(self, now_ns: int) -> float:
        """Seconds until a frame would be let through (0: now)."""
        if self._next_ns is None:
            return 0.0
        return max(0.0, (self._next_ns - self._period_ns // 4 - now_ns) * 1e-9)

    def allow(self, now_ns: int) -> bool:
        if self.wait_s(now_ns) > 0:
            return False
        if self._next_ns is None or now_ns > self._next_ns + self._period_ns:
            self._next_ns = now_ns  # first frame, or after a gap: restart the schedule from now
        self._next_ns += self._period_ns
        return True
