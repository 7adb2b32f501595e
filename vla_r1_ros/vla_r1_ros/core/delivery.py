"""At-least-once delivery of finished trials: the producer keeps each record until the receiver
confirms it is on disk, and retries in order; the receiver writes idempotently by key, so a repeated
delivery logs nothing twice and a receiver that restarts loses nothing.

`Outbox` is the producer's side, with no ROS: `deliver(key, payload) -> DeliveryResult` is injected
(the planning node passes a LogEpisode service call). `flush()` tries every pending record once, oldest
first, and stops at the first failure so records stay in order; a record the receiver refuses for good
(`refused`: it lacks the evidence its outcome claims) is dropped and named in `refused` instead. A
flush called while another one runs returns at once (a periodic retry must never queue up behind, or
block a thread on, a slow delivery).

`Spool` keeps the pending records on disk as well, so that a producer that dies (kill -9, a crash, the
machine) loses none: each record is written atomically and fsynced when it is queued, removed once the
receiver confirms it, and a producer started again on the same spool delivers what it finds there first.
When the spool cannot be written (a full disk), the record is kept in memory and `spool_error` says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_r1_ros.core.episodes.durable import fsync_dir, write_durable
from vla_r1_ros.core.episodes.layout import LOCK_FILE, TMP_PREFIX, EpisodeStoreError

SPOOL_SUFFIX = ".record"
DAMAGED_SUFFIX = ".damaged"
_SPOOL_NAME = re.compile(r"\A([0-9]{9,})-([A-Za-z0-9_.-]+)" + re.escape(SPOOL_SUFFIX) + r"\Z")


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    detail: str = ""  # receiver's answer: the index line when delivered, the reason when not
    refused: bool = False  # the receiver will never take this record: it is dropped, not sent again


class Spool:
    """Pending records on disk, one file each (`<sequence>-<key>.record`), in the order they were queued.

    One producer per spool (a second is refused, as a second writer of an episode log is): two planning
    processes delivering the same records would only log each once, but would race to remove the files.
    """

    def __init__(self, directory: str | Path, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]):
        self.directory = Path(directory)
        self._encode, self._decode = encode, decode
        self._files: dict[str, Path] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EpisodeStoreError(
                f"cannot create the delivery spool {self.directory}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise EpisodeStoreError(f"the delivery spool {self.directory} is used by another process") from exc
        self._next = 1 + max((int(m[1]) for m in map(_SPOOL_NAME.match, self._names()) if m), default=0)

    def _names(self) -> list[str]:
        return sorted(path.name for path in self.directory.iterdir())

    def load(self) -> tuple[list[tuple[str, Any]], list[str]]:
        """The records an earlier producer left, oldest first, and what could not be read (each such file
        is renamed `*.damaged`, kept for a person to look at, and never delivered)."""
        records, damaged = [], []
        for name in self._names():
            path = self.directory / name
            if name.startswith(TMP_PREFIX):  # a save cut short: its record was never queued
                path.unlink(missing_ok=True)
                continue
            match = _SPOOL_NAME.match(name)
            if not match:
                continue
            try:
                record = self._decode(path.read_bytes())
            except Exception as exc:  # whatever a damaged file makes the decoder raise, it is set aside
                path.rename(path.with_name(name + DAMAGED_SUFFIX))
                damaged.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            self._files[match[2]] = path
            records.append((match[2], record))
        return records, damaged

    def save(self, key: str, record: Any) -> None:
        """Write one record durably before its delivery is tried. Raises OSError (the disk is full)."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"spool key {key!r} is not a file name")
        name = f"{self._next:09d}-{key}{SPOOL_SUFFIX}"
        self._next += 1
        tmp, final = self.directory / f"{TMP_PREFIX}{name}", self.directory / name
        try:
            write_durable(tmp, self._encode(record))
            os.rename(tmp, final)
            fsync_dir(self.directory)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        self._files[key] = final

    def remove(self, key: str) -> None:
        """Forget a delivered record (a file left behind by a failed removal is delivered again and logged
        once: the receiver is idempotent)."""
        path = self._files.pop(key, None)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        os.close(self._lock_fd)


class Outbox:
    def __init__(
        self,
        deliver: Callable[[str, Any], DeliveryResult],
        clock: Callable[[], float] = time.monotonic,
        spool: Spool | None = None,
    ):
        """`spool`: where pending records also live, so that they outlive this process."""
        self._deliver = deliver
        self._clock = clock
        self._spool = spool
        self._pending: OrderedDict[str, tuple[Any, float]] = OrderedDict()  # key -> (payload, queued at)
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one flush at a time: deliveries stay in order
        self.last_error = ""
        self.spool_error = ""  # why the last record could not be spooled ("" when it was)
        self.refused: list[tuple[str, str]] = []  # (key, the receiver's reason): dropped, never delivered

    def restore(self) -> tuple[list[str], list[str]]:
        """Queue what the spool holds from an earlier producer, ahead of anything new: the keys queued,
        and the spool's files that could not be read."""
        if self._spool is None:
            return [], []
        records, damaged = self._spool.load()
        with self._lock:
            for key, payload in records:
                self._pending.setdefault(key, (payload, self._clock()))
        return [key for key, _ in records], damaged

    def put(self, key: str, payload: Any) -> None:
        with self._lock:
            if key in self._pending:
                return
        if self._spool is not None:  # on disk before a delivery can remove it
            try:
                self._spool.save(key, payload)
                self.spool_error = ""
            except OSError as exc:  # kept in memory: delivered while this process lives
                self.spool_error = f"cannot spool {key} to {self._spool.directory}: {exc.strerror or exc}"
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
                if result.refused:  # kept, it would block every record behind it for ever
                    self.refused.append((key, result.detail))
                elif not result.delivered:
                    self.last_error = result.detail
                    return tried
                with self._lock:
                    self._pending.pop(key, None)
                if self._spool is not None:
                    self._spool.remove(key)
        finally:
            self._flushing.release()
