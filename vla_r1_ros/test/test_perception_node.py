"""The perception node publishes real messages that other nodes receive (in process and across processes).

Sources are real code paths: a `rs.software_device` through RealSenseCamera (also unplugged and
replaced by a new one), and a RealSense recording through ReplayCamera, in process and in a separate
`perception_node` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, TimeReference
from std_msgs.msg import String
from vla_r1_interfaces.msg import SceneState

from vla_r1_ros.cameras.base import CameraError
from vla_r1_ros.cameras.realsense import RealSenseCamera
from vla_r1_ros.cameras.replay import ReplayCamera
from vla_r1_ros.core.config import PackageConfig, load_config
from vla_r1_ros.core.geometry import CameraIntrinsics, camera_extrinsics
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import image_to_numpy, intrinsics_from_camera_info, stamp_to_ns
from vla_r1_ros.nodes.perception_node import (
    COLOR_TOPIC,
    DEPTH_TOPIC,
    FRAME_QOS,
    INFO_TOPIC,
    RECORDED_STAMP_TOPIC,
    SCENE_TOPIC,
    STATUS_TOPIC,
    PerceptionNode,
)
from vla_r1_ros.nodes.scene_msgs import scene_from_msg
from vla_r1_ros.testing.realsense import SoftwareRealSense, box_scene, record
from vla_r1_ros.testing.ros import spin_until

W, H = 160, 120
COLOR_K = CameraIntrinsics(W, H, 150.0, 150.0, 79.5, 59.5)
DEPTH_K = CameraIntrinsics(W, H, 140.0, 140.0, 80.0, 60.0)

CONTEXT = ProcessContext(PackageConfig.load())  # no workcell: these tests hand the node its camera


class Listener:
    """A second node that keeps everything the perception node publishes, by stamp (best effort, as a
    viewer reads them, unless `qos` says otherwise)."""

    def __init__(self, qos: QoSProfile = qos_profile_sensor_data) -> None:
        self.node = Node("perception_listener")
        self.messages: dict[str, dict[int, object]] = defaultdict(dict)
        self.status: list[dict] = []
        for topic, kind in ((COLOR_TOPIC, Image), (DEPTH_TOPIC, Image), (INFO_TOPIC, CameraInfo)):
            self.node.create_subscription(kind, topic, self._keep(topic), qos)
        self.node.create_subscription(String, STATUS_TOPIC, lambda m: self.status.append(json.loads(m.data)), 10)

    def _keep(self, topic: str):
        def callback(msg) -> None:
            self.messages[topic][stamp_to_ns(msg.header.stamp)] = msg

        return callback

    def complete_stamps(self) -> set[int]:
        """Stamps for which colour, depth and camera info all arrived."""
        topics = (COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC)
        return set.intersection(*(set(self.messages[t]) for t in topics))


def check_frame(listener: Listener, stamp: int, intrinsics: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    color = listener.messages[COLOR_TOPIC][stamp]
    depth = listener.messages[DEPTH_TOPIC][stamp]
    info = listener.messages[INFO_TOPIC][stamp]
    assert (color.encoding, depth.encoding) == ("rgb8", "16UC1")
    assert (color.width, color.height, depth.width, depth.height, info.width, info.height) == (W, H) * 3
    frame_ids = {color.header.frame_id, depth.header.frame_id, info.header.frame_id}
    assert frame_ids == {"camera_color_optical_frame"}
    assert intrinsics_from_camera_info(info) == intrinsics
    assert np.allclose(np.reshape(info.k, (3, 3)), intrinsics.k)
    return image_to_numpy(color), image_to_numpy(depth)


def test_node_publishes_software_realsense_frames(executor):
    device = SoftwareRealSense(DEPTH_K, COLOR_K, depth_to_color_m=(0.015, 0.0, 0.0))
    camera = RealSenseCamera(width=W, height=H, fps=30, find_device=lambda: device.device)
    perception = PerceptionNode(
        CONTEXT,
        source=camera,
        parameter_overrides=[Parameter("rate_hz", value=0.0), Parameter("status_period_s", value=0.5)],
    )
    listener = Listener()
    executor.add_node(perception)
    executor.add_node(listener.node)

    pushed: dict[int, np.ndarray] = {}  # stamp -> colour image
    stop = threading.Event()

    def feed() -> None:  # a 30 Hz camera
        index = 0
        while not stop.is_set():
            index += 1
            depth, color = box_scene(W, H, index)
            now_ms = time.time() * 1e3
            pushed[round(now_ms * 1e6)] = color
            device.push(depth, color, frame_number=index, timestamp_ms=now_ms)
            time.sleep(1 / 30)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert spin_until(executor, lambda: len(listener.complete_stamps()) >= 10 and listener.status, 15.0)
    finally:
        stop.set()
        feeder.join()

    for stamp in sorted(listener.complete_stamps()):
        color, depth = check_frame(listener, stamp, COLOR_K)
        assert np.array_equal(color, pushed[stamp])  # the image of exactly that instant
        assert set(np.unique(depth)) <= {0, 500, 1000} and (depth == 1000).mean() > 0.8
    assert spin_until(executor, lambda: any(s["published"] > 0 for s in listener.status), 3.0)
    status = listener.status[-1]
    assert status["source"] == "realsense" and status["state"] == "streaming"
    assert status["received"] >= status["published"] > 0
    # Freshness is the stamps' (each image is the one pushed at its stamp, above); `stale` counts frames
    # that a loaded machine delivered late, which no test can rule out.


class SoftwareFeeder:
    """Pushes 30 Hz frames into whichever software RealSense is plugged in (none: unplugged)."""

    def __init__(self) -> None:
        self.plugged: SoftwareRealSense | None = None
        self.pushed: dict[int, tuple[SoftwareRealSense, np.ndarray]] = {}  # stamp -> (device, colour)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def find_device(self):
        if self.plugged is None:
            raise CameraError("no RealSense device with serial 700 found; connected devices:\n  none")
        return self.plugged.device

    def _feed(self) -> None:
        index = 0
        while not self._stop.wait(1 / 30):
            device = self.plugged
            if device is None:
                continue
            index += 1
            depth, color = box_scene(W, H, index)
            now_ms = time.time() * 1e3
            self.pushed[round(now_ms * 1e6)] = (device, color)
            device.push(depth, color, frame_number=index, timestamp_ms=now_ms)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_an_unplugged_realsense_is_reported_and_a_replugged_one_streams_again(executor, capfd):
    feeder = SoftwareFeeder()
    feeder.plugged = first = SoftwareRealSense(DEPTH_K, COLOR_K, serial="700")
    camera = RealSenseCamera(serial="700", width=W, height=H, stall_timeout_s=0.5, find_device=feeder.find_device)
    perception = PerceptionNode(
        CONTEXT,
        source=camera,
        parameter_overrides=[
            Parameter("rate_hz", value=0.0),
            Parameter("status_period_s", value=0.2),
            Parameter("restart_delay_s", value=0.1),
            Parameter("restart_max_delay_s", value=0.4),
        ],
    )
    listener = Listener()
    executor.add_node(perception)
    executor.add_node(listener.node)
    try:
        assert spin_until(executor, lambda: len(listener.complete_stamps()) >= 3, 15.0)
        feeder.plugged = None  # unplugged: no frames, and no device to open again
        assert spin_until(executor, lambda: listener.status and listener.status[-1]["state"] == "restarting", 5.0)
        # First the stall, then restarts that fail while nothing is plugged in: each is the last error.
        assert spin_until(executor, lambda: "no RealSense device" in (listener.status[-1]["last_error"] or ""), 5.0)
        before_replug = set(listener.complete_stamps())
        feeder.plugged = second = SoftwareRealSense(DEPTH_K, COLOR_K, serial="700")  # a new device
        assert spin_until(
            executor,
            lambda: (
                len(listener.complete_stamps() - before_replug) >= 3 and listener.status[-1]["state"] == "streaming"
            ),
            15.0,
        )
    finally:
        feeder.stop()
    # At least the restart that found the new device. Its last error is the unplug's, checked above before
    # the replug, unless the new device stalled too and was restarted again (a loaded fresh-clone run).
    assert listener.status[-1]["restarts"] >= 1
    for stamp in listener.complete_stamps() - before_replug:
        device, color = feeder.pushed[stamp]
        assert device is second and np.array_equal(check_frame(listener, stamp, COLOR_K)[0], color)
    assert any(feeder.pushed[s][0] is first for s in before_replug)
    logged = capfd.readouterr().err  # rclpy logs to stderr
    assert "camera source 'realsense' failed: RealSense 700 stalled: no frame for" in logged
    assert "camera source 'realsense' did not start again: no RealSense device with serial 700" in logged


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("recording") / "software.db3"
    recorded = record(path, SoftwareRealSense(DEPTH_K, COLOR_K), [box_scene(W, H, i) for i in range(1, 16)])
    return path, {frame.stamp_ns for frame in recorded.values()}


def test_a_replay_is_stamped_at_playback_with_each_recorded_stamp_beside_it(executor, recording):
    path, recorded_stamps = recording
    # First: the node plays the recording as soon as it is built. It reads the frames as the planning node
    # does (reliable): a best-effort reader lost frames of the burst in a loaded fresh-clone run.
    listener = Listener(FRAME_QOS)
    recorded_at: dict[int, int] = {}  # playback stamp -> recorded stamp
    listener.node.create_subscription(
        TimeReference,
        RECORDED_STAMP_TOPIC,
        lambda m: recorded_at.__setitem__(stamp_to_ns(m.header.stamp), stamp_to_ns(m.time_ref)),
        FRAME_QOS,  # as the planning node takes it
    )
    started_ns = time.time_ns()
    # Every frame played (the reader's pace; at the recorded pace a loaded machine drops frames). A fast
    # machine then publishes the 15 frames in milliseconds, and this keep-last-5 reliable listener is
    # sure to get only the last 5 of them: what is checked below holds for each frame it gets.
    perception = PerceptionNode(
        CONTEXT,
        source=ReplayCamera(path),
        parameter_overrides=[Parameter("rate_hz", value=0.0), Parameter("status_period_s", value=0.2)],
    )
    executor.add_node(perception)
    executor.add_node(listener.node)
    assert spin_until(executor, lambda: listener.status and listener.status[-1]["state"] == "finished", 10.0)
    status = listener.status[-1]
    assert status["source"] == "replay" and status["published"] >= 10
    # Stamped when played, not when recorded: below, every frame's stamp is after the node started.

    # The frames this listener got whole with their recorded stamps: a keep-last-5 reader is sure of the
    # last 5 on each topic (when its callbacks fall behind it keeps the newest, so which earlier ones it
    # has differs by topic).
    def matched() -> set[int]:
        return listener.complete_stamps() & set(recorded_at)

    assert spin_until(executor, lambda: len(matched()) >= 5, 3.0)
    for stamp in matched():
        check_frame(listener, stamp, COLOR_K)
        assert stamp >= started_ns  # played now: a trial started before it takes it
        assert recorded_at[stamp] in recorded_stamps and recorded_at[stamp] < started_ns
    assert len(set(recorded_at.values())) == len(recorded_at)  # one recorded frame per playback stamp


def test_perception_node_process_replays_a_recording(ros, recording):
    """`python -m vla_r1_ros.nodes.perception_node` in its own process; this process subscribes."""
    command = [sys.executable, "-m", "vla_r1_ros.nodes.perception_node", "--ros-args"]
    for parameter in ("source:=replay", f"recording:={recording[0]}", "repeat:=true", "rate_hz:=0.0"):
        command += ["-p", parameter]
    process = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    listener = Listener()
    executor = SingleThreadedExecutor()
    executor.add_node(listener.node)
    try:
        # Discovery across processes takes about a second; then frames flow at the recording's pace.
        received = spin_until(executor, lambda: len(listener.complete_stamps()) >= 5 or process.poll() is not None, 30)
        assert received and process.poll() is None, process.stdout.read().decode() if process.poll() else "no frames"
        stamps = sorted(listener.complete_stamps())
        for stamp in stamps:
            check_frame(listener, stamp, COLOR_K)
        assert spin_until(executor, lambda: listener.status and listener.status[-1]["published"] > 0, 5.0)
        assert listener.status[-1]["source"] == "replay"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        executor.shutdown()
        listener.node.destroy_node()
    assert returncode == 0, process.stdout.read().decode()


def test_sim_source_depth_matches_the_workcell(executor, config, workcell):
    """source:=sim publishes the workcell camera: the depth under each object's top centre is the
    object's true distance, and the ground truth comes on workcell/scene with the frame's stamp."""
    camera_config = load_config("camera")
    optical_T_base = camera_extrinsics(camera_config).inverse()
    intrinsics = CameraIntrinsics.from_config(camera_config)
    # PyBullet's EGL renderer segfaults when its first render runs off the thread that loaded it, and
    # the node renders in its capture thread. Until Workcell renders once when it is built, do it here.
    workcell.capture()
    perception = PerceptionNode(
        ProcessContext(config, workcell),
        parameter_overrides=[Parameter("source", value="sim"), Parameter("rate_hz", value=5.0)],
    )
    listener = Listener()
    scenes: dict[int, SceneState] = {}
    listener.node.create_subscription(
        SceneState, SCENE_TOPIC, lambda m: scenes.__setitem__(stamp_to_ns(m.header.stamp), m), 10
    )
    executor.add_node(perception)
    executor.add_node(listener.node)
    assert spin_until(executor, lambda: listener.complete_stamps() & set(scenes), 30.0)

    stamp = max(listener.complete_stamps() & set(scenes))
    color = listener.messages[COLOR_TOPIC][stamp]
    assert (color.encoding, color.width, color.height) == ("rgb8", intrinsics.width, intrinsics.height)
    depth = image_to_numpy(listener.messages[DEPTH_TOPIC][stamp])
    assert intrinsics_from_camera_info(listener.messages[INFO_TOPIC][stamp]) == intrinsics
    assert scenes[stamp].header.frame_id == camera_config["frames"]["base"]
    scene = scene_from_msg(scenes[stamp])
    checked = 0
    for obj in scene.objects:
        if not obj.visible or obj.shape not in ("cube", "cuboid", "cylinder"):  # flat tops: one depth per pixel
            continue
        top = optical_T_base.apply(obj.top_center)
        u, v = intrinsics.project(top).round().astype(int)
        measured = intrinsics.deproject(u, v, depth[v, u] / 1000.0)
        assert np.linalg.norm(measured - intrinsics.deproject(u, v, top[2])) < 0.005, obj.name
        checked += 1
    assert checked >= 1
