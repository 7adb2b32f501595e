"""At-least-once delivery (core.delivery.Outbox): kept until confirmed, in order, never lost — in memory
and, with a `Spool`, across the death of the producer."""

from __future__ import annotations

import errno
import json
import threading

import pytest

from vla_r1_ros.core import delivery
from vla_r1_ros.core.delivery import DAMAGED_SUFFIX, SPOOL_SUFFIX, DeliveryResult, Outbox, Spool
from vla_r1_ros.core.episodes import EpisodeStoreError


class Receiver:
    """An idempotent receiver that can be down; it records what it was sent."""

    def __init__(self) -> None:
        self.up = True
        self.written: dict[str, object] = {}
        self.calls: list[str] = []

    def deliver(self, key: str, payload: object) -> DeliveryResult:
        self.calls.append(key)
        if not self.up:
            return DeliveryResult(False, "disk full")
        self.written.setdefault(key, payload)
        return DeliveryResult(True, f"line of {key}")


def test_records_stay_until_the_receiver_confirms_them_in_order():
    receiver = Receiver()
    outbox = Outbox(receiver.deliver)
    receiver.up = False
    outbox.put("a", 1)
    outbox.put("b", 2)
    tried = outbox.flush()
    assert tried == {"a": DeliveryResult(False, "disk full")}  # b is not tried past a failed a: order kept
    assert outbox.pending_keys() == ["a", "b"] and outbox.last_error == "disk full"
    receiver.up = True
    assert outbox.flush() == {"a": DeliveryResult(True, "line of a"), "b": DeliveryResult(True, "line of b")}
    assert len(outbox) == 0 and receiver.written == {"a": 1, "b": 2}


def test_a_transport_exception_is_a_failed_delivery_not_a_lost_record():
    def broken(key, payload):
        raise TimeoutError("service call timed out")

    outbox = Outbox(broken)
    outbox.put("a", 1)
    assert not outbox.flush()["a"].delivered and outbox.pending_keys() == ["a"]
    assert "TimeoutError" in outbox.last_error


def test_putting_a_key_twice_keeps_one_record_and_its_age():
    now = [10.0]
    outbox = Outbox(Receiver().deliver, clock=lambda: now[0])
    outbox.put("a", 1)
    now[0] = 12.5
    outbox.put("a", 1)
    assert outbox.pending_keys() == ["a"] and outbox.oldest_age_s() == 2.5


def test_a_flush_during_a_flush_returns_at_once():
    release = threading.Event()
    entered = threading.Event()

    def slow(key, payload):
        entered.set()
        release.wait(5)
        return DeliveryResult(True)

    outbox = Outbox(slow)
    outbox.put("a", 1)
    worker = threading.Thread(target=outbox.flush)
    worker.start()
    assert entered.wait(5)
    assert outbox.flush() == {}  # never blocks a second caller (a timer) behind a slow delivery
    release.set()
    worker.join(5)
    assert len(outbox) == 0


def spool(directory) -> Spool:
    return Spool(directory, lambda record: json.dumps(record).encode(), lambda data: json.loads(data))


def test_a_producer_that_dies_loses_nothing_its_successor_delivers_the_spool_in_order(tmp_path):
    receiver = Receiver()
    receiver.up = False
    first = spool(tmp_path)
    outbox = Outbox(receiver.deliver, spool=first)
    for key in ("t1", "t2", "t3"):
        outbox.put(key, {"trial": key})
    outbox.flush()
    first.close()  # the process dies here: nothing was delivered, nothing is in memory any more

    receiver.up = True
    successor = Outbox(receiver.deliver, spool=spool(tmp_path))
    assert successor.restore() == (["t1", "t2", "t3"], [])
    successor.put("t4", {"trial": "t4"})  # a new trial queues behind what the dead producer left
    successor.flush()
    assert list(receiver.written) == ["t1", "t2", "t3", "t4"] and receiver.written["t2"] == {"trial": "t2"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(SPOOL_SUFFIX)]  # delivered: gone from disk


def test_a_damaged_spool_file_is_set_aside_and_never_delivered(tmp_path):
    first = spool(tmp_path)
    Outbox(Receiver().deliver, spool=first).put("t1", {"trial": "t1"})
    first.close()
    (tmp_path / f"000000002-t2{SPOOL_SUFFIX}").write_bytes(b"{not json")
    receiver = Receiver()
    successor = Outbox(receiver.deliver, spool=spool(tmp_path))
    keys, damaged = successor.restore()
    assert keys == ["t1"] and len(damaged) == 1 and damaged[0].startswith(f"000000002-t2{SPOOL_SUFFIX}: ")
    assert (tmp_path / f"000000002-t2{SPOOL_SUFFIX}{DAMAGED_SUFFIX}").exists()


def test_a_full_disk_keeps_the_record_in_memory_and_says_so(tmp_path, monkeypatch):
    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(delivery, "write_durable", disk_full)
    receiver = Receiver()
    receiver.up = False
    outbox = Outbox(receiver.deliver, spool=spool(tmp_path))
    outbox.put("t1", {"trial": "t1"})
    assert outbox.pending_keys() == ["t1"]
    assert outbox.spool_error == f"cannot spool t1 to {tmp_path}: No space left on device"
    receiver.up = True
    outbox.flush()
    assert receiver.written == {"t1": {"trial": "t1"}}


def test_one_producer_per_spool(tmp_path):
    held = spool(tmp_path)
    with pytest.raises(EpisodeStoreError, match="used by another process"):
        spool(tmp_path)
    held.close()
    spool(tmp_path).close()


def test_a_record_the_receiver_refuses_for_good_is_dropped_and_does_not_block_the_rest(tmp_path):
    """A record the logger refuses (it lacks the evidence its outcome claims) would be refused at every
    try: kept, it would hold back every record behind it. It is dropped, named, and gone from the spool."""
    written = {}

    def deliver(key, payload):
        if payload.get("forged"):
            return DeliveryResult(False, "refused, nothing logged: judged by the simulator without a scene", True)
        written[key] = payload
        return DeliveryResult(True, f"line of {key}")

    outbox = Outbox(deliver, spool=spool(tmp_path))
    outbox.put("t1", {"forged": True})
    outbox.put("t2", {"trial": "t2"})
    tried = outbox.flush()
    assert tried["t1"].refused and list(written) == ["t2"] and len(outbox) == 0
    assert outbox.refused == [("t1", "refused, nothing logged: judged by the simulator without a scene")]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(SPOOL_SUFFIX)]
