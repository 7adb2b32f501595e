"""At-least-once delivery (core.delivery.Outbox): kept until confirmed, in order, never lost."""

from __future__ import annotations

import threading

from vla_r1_ros.core.delivery import DeliveryResult, Outbox


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
