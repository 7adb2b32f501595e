"""The RealSense and replay sources, driven end to end by a `rs.software_device` (no hardware).

The software device goes through the same pipeline, filters, alignment and conversion as a USB camera.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pyrealsense2 as rs
import pytest

from vla_r1_ros.cameras import make_camera
from vla_r1_ros.cameras.base import CameraError
from vla_r1_ros.cameras.realsense import DepthFilters, RealSenseCamera
from vla_r1_ros.cameras.replay import ReplayCamera
from vla_r1_ros.core.geometry import CameraIntrinsics
from vla_r1_ros.testing.realsense import SoftwareRealSense, box_scene, record

W, H = 160, 120
DEPTH_K = CameraIntrinsics(W, H, 140.0, 140.0, 80.0, 60.0)
COLOR_K = CameraIntrinsics(W, H, 150.0, 152.0, 79.5, 59.0)
DEPTH_TO_COLOR = np.array([0.05, 0.01, 0.0])  # colour camera 5 cm beside the depth camera: a visible shift
NO_FILTERS = DepthFilters(spatial=False, temporal=False, hole_filling=False)
RECORDED = 12


def software_camera(**kwargs) -> SoftwareRealSense:
    return SoftwareRealSense(DEPTH_K, COLOR_K, DEPTH_TO_COLOR, **kwargs)


def started(device: SoftwareRealSense, **kwargs) -> RealSenseCamera:
    camera = RealSenseCamera(width=W, height=H, fps=device.fps, find_device=lambda: device.device, **kwargs)
    camera.start()
    return camera


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("recording") / "software.db3"
    live = record(path, software_camera(serial="555000555"), [box_scene(W, H, i) for i in range(1, RECORDED + 1)])
    assert sorted(live) == list(range(1, RECORDED + 1))
    return path, live


def test_alignment_intrinsics_stamps_and_sequence():
    device = software_camera()
    camera = started(device, filters=NO_FILTERS)
    try:
        t0_ms = 1.7e12
        for index in range(1, 4):
            depth, color = box_scene(W, H, index)
            device.push(depth, color, frame_number=index, timestamp_ms=t0_ms + 33.3 * index)
            frame = camera.read(2.0)
            assert frame is not None
            assert frame.sequence == index
            assert frame.stamp_ns == round((t0_ms + 33.3 * index) * 1e6)
            assert frame.intrinsics == COLOR_K
            assert frame.frame_id == "camera_color_optical_frame"
            assert frame.color.dtype == np.uint8 and frame.color.shape == (H, W, 3)
            assert np.array_equal(frame.color, color)  # colour is the reference: untouched
            assert frame.depth_mm.dtype == np.uint16 and frame.depth_mm.shape == (H, W)
    finally:
        camera.stop()

    # Where the box face must land in colour pixels: deproject its depth pixels at 0.5 m, move them
    # into the colour frame, project with the colour intrinsics.
    box_v, box_u = np.nonzero(depth == 500)
    in_color = COLOR_K.project(DEPTH_K.deproject(box_u, box_v, 0.5) + DEPTH_TO_COLOR)
    got_v, got_u = np.nonzero(frame.depth_mm == 500)
    assert abs(got_u.mean() - in_color[:, 0].mean()) < 0.6
    assert abs(got_v.mean() - in_color[:, 1].mean()) < 0.6
    assert abs(got_u.mean() - box_u.mean()) > 10  # the extrinsics matter: unaligned depth would be far off
    # Everything else that is covered sees the wall at 1 m (the box hides part of it: no depth there).
    assert set(np.unique(frame.depth_mm)) <= {0, 500, 1000}
    assert (frame.depth_mm == 1000).mean() > 0.8


def test_a_repeated_colour_frame_is_not_a_new_frame():
    """The syncer can hand a colour frame out again (playback on a loaded machine did): it is the same
    image, so it is dropped and the sequence stays strictly increasing."""
    device = software_camera()
    camera = started(device, filters=NO_FILTERS)
    try:
        device.push(*box_scene(W, H, 1), frame_number=1, timestamp_ms=1.7e12)
        assert camera.read(2.0).sequence == 1
        device.push(*box_scene(W, H, 1), frame_number=1, timestamp_ms=1.7e12 + 1.0)
        assert camera.read(0.5) is None
        device.push(*box_scene(W, H, 2), frame_number=2, timestamp_ms=1.7e12 + 33.3)
        assert camera.read(2.0).sequence == 2
    finally:
        camera.stop()


def test_depth_scale_converts_to_millimetres():
    device = software_camera(depth_units_m=0.0001)  # D405-style 0.1 mm units
    camera = started(device, filters=NO_FILTERS)
    try:
        depth, color = box_scene(W, H, 0)
        device.push(depth * 10, color, frame_number=1, timestamp_ms=1e12)
        frame = camera.read(2.0)
    finally:
        camera.stop()
    assert set(np.unique(frame.depth_mm)) <= {0, 500, 1000}
    assert (frame.depth_mm == 500).sum() > 100


def test_hardware_clock_stamps_are_anchored_to_host_time():
    device = software_camera()
    camera = started(device, filters=NO_FILTERS)
    stamps = []
    try:
        for index in range(1, 4):
            device.push(*box_scene(W, H, index), index, 5000.0 + 33.3 * index, rs.timestamp_domain.hardware_clock)
            stamps.append(camera.read(2.0).stamp_ns)
    finally:
        camera.stop()
    assert abs(stamps[0] - time.time_ns()) < 2e9
    assert np.allclose(np.diff(stamps), 33.3e6, atol=1e3)


@pytest.mark.parametrize("enabled", [True, False])
def test_hole_filling_is_switchable(enabled):
    device = software_camera()
    camera = started(device, filters=DepthFilters(spatial=False, temporal=False, hole_filling=enabled))
    depth, color = box_scene(W, H, 0)
    depth[100:104, 20:24] = 0  # a hole in the wall, far from the box
    try:
        device.push(depth, color, frame_number=1, timestamp_ms=1e12)
        frame = camera.read(2.0)
    finally:
        camera.stop()
    hole = COLOR_K.project(DEPTH_K.deproject(21.5, 101.5, 1.0) + DEPTH_TO_COLOR).round().astype(int)
    assert (frame.depth_mm[hole[1], hole[0]] == 1000) == enabled


def test_spatial_filter_smooths_noise():
    rng = np.random.default_rng(0)
    noisy = (1000 + rng.integers(-8, 9, (H, W))).astype(np.uint16)
    color = np.zeros((H, W, 3), np.uint8)
    spreads = {}
    for spatial in (False, True):
        device = software_camera()
        camera = started(device, filters=DepthFilters(spatial=spatial, temporal=False, hole_filling=False))
        try:
            device.push(noisy, color, frame_number=1, timestamp_ms=1e12)
            depth = camera.read(2.0).depth_mm
        finally:
            camera.stop()
        spreads[spatial] = depth[20:-20, 20:-20].std()
    assert spreads[True] < 0.5 * spreads[False]


def test_a_stalled_stream_raises_and_a_restart_streams_again():
    device = software_camera()
    camera = started(device, filters=NO_FILTERS, stall_timeout_s=0.3)
    try:
        device.push(*box_scene(W, H, 1), frame_number=1, timestamp_ms=1e12)
        assert camera.read(2.0).sequence == 1
        stalled_at = time.monotonic()
        with pytest.raises(CameraError, match=r"RealSense camera stalled: no frame for 0\.\d s"):
            while time.monotonic() < stalled_at + 5.0:
                assert camera.read(0.1) is None  # no frame yet, but not stalled either
        assert time.monotonic() - stalled_at >= 0.3
        camera.stop()
        camera.start()  # what the perception node does after a failure
        device.push(*box_scene(W, H, 2), frame_number=2, timestamp_ms=1e12 + 33.3)
        assert camera.read(2.0).sequence == 2  # the restarted pipeline delivers again
    finally:
        camera.stop()


def test_a_replugged_camera_is_a_new_device_found_at_restart():
    """Unplug: the software device stops delivering; replug: a new one (same serial) takes its place."""
    plugged = {"device": software_camera(serial="700")}
    camera = RealSenseCamera(
        serial="700",
        width=W,
        height=H,
        filters=NO_FILTERS,
        stall_timeout_s=0.3,
        find_device=lambda: plugged["device"].device,
    )
    camera.start()
    try:
        plugged["device"].push(*box_scene(W, H, 1), frame_number=1, timestamp_ms=1e12)
        assert camera.read(2.0) is not None
        with pytest.raises(CameraError, match="RealSense 700 stalled"):
            for _ in range(50):
                camera.read(0.1)
        camera.stop()
        plugged["device"] = software_camera(serial="700")
        camera.start()
        depth, color = box_scene(W, H, 9)
        plugged["device"].push(depth, color, frame_number=1, timestamp_ms=2e12)
        frame = camera.read(2.0)
        assert frame is not None and np.array_equal(frame.color, color)
    finally:
        camera.stop()


def test_missing_device_error_lists_connected_devices(recording):
    context = rs.context()
    recorded = context.load_device(str(recording[0]))  # a recorded camera shows up while loaded
    camera = RealSenseCamera(serial="123456789", context=context)
    with pytest.raises(CameraError) as error:
        camera.start()
    message = str(error.value)
    assert "no RealSense device with serial 123456789 found" in message
    assert "Software RealSense (serial 555000555" in message
    del recorded


def test_unsupported_mode_is_a_clear_error():
    device = software_camera()
    camera = RealSenseCamera(width=W, height=H, fps=60, find_device=lambda: device.device)  # it streams at 30
    with pytest.raises(CameraError, match=f"did not start: .*requested colour rgb8 and depth z16 at {W}x{H}, 60 fps"):
        camera.start()


def test_missing_device_error_without_serial():
    with pytest.raises(CameraError, match="no RealSense device with serial nope found; connected devices"):
        RealSenseCamera(serial="nope").start()


def test_replay_is_bit_identical_and_signals_the_end(recording):
    path, live = recording
    replay = ReplayCamera(path, filters=NO_FILTERS)
    started_ns = time.time_ns()
    replay.start()
    replayed = []
    deadline = time.monotonic() + 10.0
    while not replay.finished and time.monotonic() < deadline:
        frame = replay.read(0.5)
        if frame is not None:
            replayed.append(frame)
    ended_ns = time.time_ns()
    assert replay.finished
    assert replay.read(0.1) is None
    # While playback starts, librealsense's syncer drops colour/depth pairs until both streams run: one
    # or two frames on an idle machine, three on a loaded CI run. Every frame after that comes out, the
    # last one included, and each is the recorded one, bit for bit, with its recorded stamp kept and
    # stamped anew with the time it was played.
    sequences = [f.sequence for f in replayed]
    played_stamps = [f.stamp_ns for f in replayed]
    assert played_stamps == sorted(played_stamps) and started_ns <= played_stamps[0] <= played_stamps[-1] <= ended_ns
    assert sequences == list(range(sequences[0], RECORDED + 1)), sequences
    assert len(sequences) >= RECORDED // 2
    for frame in replayed:
        original = live[frame.sequence]
        assert np.array_equal(frame.color, original.color)
        assert np.array_equal(frame.depth_mm, original.depth_mm)
        assert frame.recorded_stamp_ns == original.stamp_ns
        assert frame.intrinsics == original.intrinsics == COLOR_K


def test_replay_repeat_loops(recording):
    replay = ReplayCamera(recording[0], repeat=True, filters=NO_FILTERS)
    replay.start()
    sequences, stamps = [], []
    try:
        deadline = time.monotonic() + 10.0
        while len(sequences) < RECORDED + 4 and time.monotonic() < deadline:
            frame = replay.read(0.5)
            if frame is not None:
                sequences.append(frame.sequence)
                stamps.append(frame.stamp_ns)
    finally:
        replay.stop()
    assert not replay.finished
    assert RECORDED in sequences and sequences[-1] < RECORDED  # went past the end and started over
    assert all(later > earlier for earlier, later in itertools.pairwise(stamps))  # time never goes back


def test_replay_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CameraError, match="recording not found"):
        ReplayCamera(tmp_path / "nothing.db3").start()


def test_make_camera():
    replay = make_camera("replay", {"recording": "x.db3", "repeat": True, "hole_filling_filter": True})
    assert isinstance(replay, ReplayCamera) and replay.repeat
    assert replay.filters == DepthFilters(spatial=True, temporal=True, hole_filling=True)
    camera = make_camera("realsense", {"serial": "42", "fps": 15, "spatial_filter": False, "frame_id": "cam"})
    assert (camera.name, camera.serial, camera.fps, camera.filters.spatial, camera.frame_id) == (
        "realsense",
        "42",
        15,
        False,
        "cam",
    )
    with pytest.raises(CameraError, match="needs a recording"):
        make_camera("replay", {"recording": ""})
    with pytest.raises(CameraError, match="unknown camera source 'kinect'"):
        make_camera("kinect", {})
    # The factory reaches no singleton: the simulated camera renders the workcell its caller hands over.
    with pytest.raises(CameraError, match="needs the simulated workcell"):
        make_camera("sim", {})
    sentinel = object()
    assert make_camera("sim", {}, lambda: sentinel).workcell is sentinel
