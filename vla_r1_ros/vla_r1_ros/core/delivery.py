"""At-least-once delivery of finished trials: the producer keeps each record until the receiver
confirms it is on disk, and retries in order; the receiver writes idempotently by key, so a repeated
delivery logs nothing twice and a receiver that restarts loses nothing.

`Outbox` is the producer's side, with no ROS: `deliver(key, payload) -> DeliveryResult` is injected
(the planning node passes a LogEpisode service call). `flush()` tries every pending record once, oldest
first, and stops at the first failure so records stay in order. A flush called while another one runs
returns at once (a periodic retry must never queue up behind, or block a thread on, a slow delivery).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    detail: str = ""  # receiver's answer: the index line when delivered, the reason when not


class Outbox:
    def __init__(self, deliver: Callable[[str, Any], DeliveryResult], clock: Callable[[], float] = time.monotonic):
        self._deliver = deliver
        self._clock = clock
        self._pending: OrderedDict[str, tuple[Any, float]] = OrderedDict()  # key -> (payload, queued at)
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one flush at a time: deliveries stay in order
        self.last_error = ""

    def put(self, key: str, payload: Any) -> None:
        with self._lock:
            self._pending.setdefault(key, (payload, self._clock()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def pending_keys(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def oldest_age_s(self) -> float:
        with self._lock:
            return self._clock() - next(iter(self._pending.values()))[1] if self._pending else 0.0

    def flush(self) -> dict[str, DeliveryResult]:
        """Deliver pending records oldest first until one fails; returns what was tried (nothing when
        another flush is running: that one delivers them)."""
        tried: dict[str, DeliveryResult] = {}
        if not self._flushing.acquire(blocking=False):
            return tried
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        return tried
                    key, (payload, _) = next(iter(self._pending.items()))
                try:
                    result = self._deliver(key, payload)
                except Exception as exc:  # a transport failure is a failed delivery, never a lost record
                    result = DeliveryResult(False, f"{type(exc).__name__}: {exc}")
                tried[key] = result
                if not result.delivered:
                    self.last_error = result.detail
                    return tried
                with self._lock:
                    self._pending.pop(key, None)
        finally:
            self._flushing.release()
