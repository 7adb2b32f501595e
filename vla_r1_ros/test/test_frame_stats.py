"""Frame-quality bookkeeping and the publish-rate limiter (plain Python)."""

from __future__ import annotations

from vla_r1_ros.cameras.frame_stats import FrameStats, RateLimiter

MS = 1_000_000


def test_counts_sequence_gaps_stale_frames_and_timeouts():
    stats = FrameStats(max_age_s=0.1)
    now = 10_000 * MS
    for sequence, age_ms in ((1, 5), (2, 5), (5, 250), (6, 5)):  # 3 and 4 lost; 5 arrives late
        stats.frame(sequence, now - age_ms * MS, now)
    stats.frame(1, now, now)  # the source restarted: numbering starts over, nothing lost
    stats.timeout()
    for _ in range(3):
        stats.published()
    stats.skipped()
    report = stats.report()
    assert {k: report[k] for k in ("received", "published", "skipped", "stale", "dropped", "timeouts")} == {
        "received": 5,
        "published": 3,
        "skipped": 1,
        "stale": 1,
        "dropped": 2,
        "timeouts": 1,
    }
    assert report["last_age_s"] == 0.0


def test_rate_is_measured_between_reports():
    now = [100.0]
    stats = FrameStats(max_age_s=0.5, clock=lambda: now[0])
    stats.report()
    for _ in range(5):
        stats.published()
    now[0] += 0.125
    assert stats.report()["rate_hz"] == 40.0
    now[0] += 1.0
    assert stats.report()["rate_hz"] == 0.0  # nothing since the last report


def jittery_30hz(seconds: float) -> list[int]:
    period = 1e9 / 30
    return [int(i * period + (2 * MS if i % 2 else -2 * MS)) for i in range(1, int(seconds * 30) + 1)]


def test_rate_limiter_passes_a_jittery_camera_at_its_own_rate():
    limiter = RateLimiter(30.0)
    assert all(limiter.allow(t) for t in jittery_30hz(2.0))


def test_rate_limiter_decimates_to_the_requested_rate():
    for rate, expected in ((15.0, 30), (20.0, 40), (10.0, 20)):
        limiter = RateLimiter(rate)
        passed = sum(limiter.allow(t) for t in jittery_30hz(2.0))
        assert abs(passed - expected) <= 1, (rate, passed)


def test_rate_limiter_zero_passes_everything_and_restarts_after_a_gap():
    assert all(RateLimiter(0.0).allow(t) for t in (1, 1, 2, 3))
    limiter = RateLimiter(10.0)
    assert limiter.allow(0) and not limiter.allow(50 * MS)
    assert limiter.allow(5_000 * MS) and not limiter.allow(5_050 * MS)  # after a gap: schedule from now


def test_rate_limiter_says_how_long_until_the_next_frame():
    limiter = RateLimiter(10.0)
    assert limiter.wait_s(0) == 0.0 and limiter.allow(0)
    assert abs(limiter.wait_s(10 * MS) - 0.065) < 1e-9  # due at 100 ms, a quarter period early allowed
    assert limiter.wait_s(80 * MS) == 0.0 and limiter.allow(80 * MS)
