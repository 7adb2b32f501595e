"""The restart policy of a failed camera source (plain Python, `cameras.restarts`)."""

from __future__ import annotations

import math

import pytest

from vla_r1_ros.cameras.restarts import FINISHED, RESTARTING, STREAMING, Backoff, SourceRestarts


def test_delays_double_from_the_first_up_to_the_maximum():
    backoff = Backoff(first_delay_s=0.5, max_delay_s=5.0)
    assert [backoff.delay_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delay_s(10_000) == 5.0  # a camera dead all night: one attempt every max_delay_s


@pytest.mark.parametrize(
    ("first", "maximum", "message"),
    [
        (0.0, 5.0, "first restart delay must be a positive number"),
        (-1.0, 5.0, "first restart delay must be a positive number"),
        (math.nan, 5.0, "first restart delay must be a positive number"),
        (2.0, 1.0, r"maximum restart delay \(1.0 s\) must be at least the first one \(2.0 s\)"),
        (1.0, math.inf, "maximum restart delay"),
    ],
)
def test_bad_delays_are_refused(first, maximum, message):
    with pytest.raises(ValueError, match=message):
        Backoff(first, maximum)


def test_a_failure_is_reported_until_a_frame_comes_after_the_restart():
    restarts = SourceRestarts(Backoff(1.0, 4.0))
    assert restarts.report() == {"state": STREAMING, "restarts": 0, "last_error": None}
    restarts.frame(now=0.0)
    assert restarts.failed("RealSense camera disconnected", now=10.0) == 1.0
    assert restarts.restart_pending and restarts.wait_s(now=10.25) == 0.75 and restarts.wait_s(now=12.0) == 0.0
    assert restarts.report() == {"state": RESTARTING, "restarts": 0, "last_error": "RealSense camera disconnected"}
    assert restarts.restarted() == 1
    # Started again, but not back until it delivers: a silent restarted camera is still restarting.
    assert not restarts.restart_pending and restarts.report()["state"] == RESTARTING
    restarts.frame(now=11.5)
    assert restarts.report() == {"state": STREAMING, "restarts": 1, "last_error": "RealSense camera disconnected"}


def test_failures_in_a_row_back_off_and_a_long_healthy_stretch_resets_the_delay():
    restarts = SourceRestarts(Backoff(1.0, 4.0))
    assert restarts.failed("no device", now=0.0) == 1.0
    assert restarts.failed("no device", now=1.0) == 2.0  # the restart itself failed
    restarts.restarted()
    restarts.frame(now=3.0)
    restarts.frame(now=5.0)  # streamed for 2 s, less than max_delay_s: still counted as a series
    assert restarts.failed("stalled", now=5.1) == 4.0
    restarts.restarted()
    restarts.frame(now=9.2)
    restarts.frame(now=13.2)  # streamed for max_delay_s: the camera is healthy again
    assert restarts.failed("stalled", now=20.0) == 1.0
    assert restarts.report()["restarts"] == 2


def test_the_end_of_a_recording_is_finished_not_a_failure():
    restarts = SourceRestarts(Backoff())
    restarts.finished()
    assert restarts.report() == {"state": FINISHED, "restarts": 0, "last_error": None}
    assert not restarts.restart_pending
