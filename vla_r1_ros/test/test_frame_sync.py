"""The approximate-time rule for frame sets (core.frame_sync), on plain stamps, through `wait_for_set` (what
the planning node calls; timeout 0 looks only at what has arrived)."""

from __future__ import annotations

import threading

from vla_r1_ros.core.frame_sync import FrameSetSync

MS = 1_000_000


def test_the_first_complete_set_after_the_start_is_taken():
    sync = FrameSetSync(("color", "depth", "info"), slop_ns=15 * MS)
    for stamp in (100, 133, 166):  # colour and info of three frames, depth of the last two only
        sync.add("color", stamp * MS, f"color@{stamp}")
        sync.add("info", stamp * MS, f"info@{stamp}")
    sync.add("depth", 133 * MS, "depth@133")
    sync.add("depth", 166 * MS, "depth@166")
    assert sync.wait_for_set(0, timeout_s=0) == {"color": "color@133", "depth": "depth@133", "info": "info@133"}
    # Captured after the instruction only: the older frame never answers a newer instruction.
    assert sync.wait_for_set(140 * MS, timeout_s=0) == {"color": "color@166", "depth": "depth@166", "info": "info@166"}
    assert sync.wait_for_set(170 * MS, timeout_s=0) is None


def test_stamps_within_the_slop_match_and_neighbours_never_do():
    sync = FrameSetSync(("color", "depth"), slop_ns=15 * MS)
    sync.add("color", 100 * MS, "c100")
    sync.add("depth", 133 * MS, "d133")  # the next frame's depth: 33 ms apart
    assert sync.wait_for_set(0, timeout_s=0) is None
    sync.add("depth", 104 * MS, "d104")  # a driver stamping depth 4 ms after colour
    assert sync.wait_for_set(0, timeout_s=0) == {"color": "c100", "depth": "d104"}


def test_wait_for_set_returns_when_the_last_part_arrives_or_times_out():
    sync = FrameSetSync(("color", "depth", "scene"))
    sync.add("color", 5, "c")
    sync.add("depth", 5, "d")
    assert sync.wait_for_set(0, timeout_s=0.05) is None  # the scene of that frame is missing
    threading.Timer(0.1, sync.add, ("scene", 5, "s")).start()
    assert sync.wait_for_set(0, timeout_s=5.0) == {"color": "c", "depth": "d", "scene": "s"}
    assert sync.newest_stamp("scene") == 5


def test_queues_keep_only_the_newest_messages():
    sync = FrameSetSync(("color", "depth"), queue_size=3)
    for stamp in range(10):
        sync.add("color", stamp * 40 * MS, stamp)
    sync.add("depth", 0, "too old: its colour frame left the queue")
    assert sync.wait_for_set(0, timeout_s=0) is None
