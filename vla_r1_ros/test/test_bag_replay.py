"""camera:=bag runs trials end to end on a bag the package recorded: the real recorder node records the
real perception node publishing the simulated workcell (reset with seed 1), then the real perception node
plays that bag with the parameters `graph.py` gives it for camera:=bag, the real planning node takes frame
sets played after each goal, lifts, plans and (in the second trial) executes, and the real reward logger
writes each episode with the frame's recorded stamp and the recorded pixels.

What stands in for what cannot run here, as in test_replay_trials: the simulated Panda (on the workcell
the bag shows) for MoveIt, and the ground-truth model of test_planning_node for VLA-R1. Bags of a lab
robot's realsense2_camera topics (bgr8 colour) are written with rosbags' own writer, the way rosbag2 lays
them out; bags lacking a topic or with an unknown encoding are refused by `GraphArgs`, naming it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from test_planning_node import instruction_for, logged, run_goal
from test_replay_trials import played_graph

from vla_r1_ros import topics
from vla_r1_ros.cameras.bag import BagCamera, bag_streams
from vla_r1_ros.core import episodes
from vla_r1_ros.core.recording import BagWriter
from vla_r1_ros.graph import GraphArgs
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import camera_info_msg, ns_to_stamp, numpy_to_image
from vla_r1_ros.nodes.perception_node import PerceptionNode
from vla_r1_ros.nodes.recorder_node import RecorderNode
from vla_r1_ros.nodes.spin import destroy_node
from vla_r1_ros.testing.ros import spin_until

RECORDED_FRAMES = 8


@pytest.fixture(scope="module")
def bag(workcell, config, tmp_path_factory):
    """A bag the recorder node wrote of the perception node publishing the workcell as reset with seed 1."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    target, instruction = instruction_for(workcell, seed=1, pick=2)  # the yellow cube
    path = tmp_path_factory.mktemp("bag") / "workcell"
    rclpy.init()  # a module fixture: set up before any test's own `ros` (pytest runs wider scopes first)
    executor = MultiThreadedExecutor(num_threads=4)
    camera = PerceptionNode(ProcessContext(config, workcell))
    recorder = RecorderNode(ProcessContext(config), parameter_overrides=[Parameter("bag_dir", value=str(path))])
    try:
        for node in (camera, recorder):
            executor.add_node(node)
        streams = [f"/{topic}" for topic in (topics.COLOR, topics.DEPTH, topics.CAMERA_INFO)]
        # every stream of a frame set recorded, not only colour: under load depth lags colour by a frame or two
        assert spin_until(
            executor,
            lambda: all(recorder.status()["messages"].get(stream, 0) >= RECORDED_FRAMES for stream in streams),
            60.0,
        )
    finally:
        for node in (recorder, camera):  # the recorder first: its bag is complete when it goes
            executor.remove_node(node)
            destroy_node(node)
        executor.shutdown()
        rclpy.try_shutdown()
    reader = BagCamera(path)
    reader.start()
    frames = {}
    while (frame := reader.read(1.0)) is not None:
        frames[frame.recorded_stamp_ns] = frame
    assert reader.finished and len(frames) >= RECORDED_FRAMES - 2
    return {"path": path, "frames": frames, "instruction": instruction, "target": target}


@pytest.fixture
def graph(executor, config, workcell, bag, tmp_path):
    played = GraphArgs(camera="bag", executor="moveit", policy="vla_r1", bag=str(bag["path"]), log_dir=str(tmp_path))
    intrinsics = next(iter(bag["frames"].values())).intrinsics
    return played_graph(executor, config, workcell, played, intrinsics, tmp_path / "log")


def test_a_recorded_bag_runs_trials_and_their_episodes_keep_the_recorded_frames(graph, workcell, bag):
    recorded = bag["frames"]
    goals_sent_ns = time.time_ns()
    dry_run = run_goal(graph, bag["instruction"], plan_only=True)
    assert dry_run.failure_stage == "dry_run", dry_run.message
    executed = run_goal(graph, bag["instruction"])
    assert workcell.object_in_tray(bag["target"].name)
    # The simulated arm placed it, but the frames are a recording: the trial is not judged (as on a real arm).
    assert not executed.success and executed.failure_stage == "", executed.message

    by_trial = {entry["trial_id"]: (entry, document) for entry, document in logged(graph, n=2)}
    for result in (dry_run, executed):
        entry, document = by_trial[result.episode_id]
        assert document["plan"]["feasible"]
        assert document["stamp_ns"] in recorded  # the episode's capture time is the frame's recorded stamp
        assert document["camera"]["stamp_ns"] > goals_sent_ns > document["stamp_ns"]
        original = recorded[document["stamp_ns"]]
        np.testing.assert_array_equal(episodes.load_color(graph["log_dir"], entry["episode"]), original.color)


def write_lab_bag(path, frames, color_topic="/camera/camera/color/image_raw", encoding="bgr8", depth=True):
    """A bag as a lab robot's `ros2 bag record` of realsense2_camera gives one (its topic names, bgr8)."""
    writer = BagWriter(path)
    prefix = "/camera/camera"
    streams = [(color_topic, "sensor_msgs/msg/Image"), (f"{prefix}/color/camera_info", "sensor_msgs/msg/CameraInfo")]
    streams += [(f"{prefix}/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image")] if depth else []
    for topic, msgtype in streams:
        writer.add_topic(topic, msgtype)
    for frame in frames:
        stamp = ns_to_stamp(frame.stamp_ns)
        color = frame.color[..., ::-1] if encoding == "bgr8" else frame.color
        messages = {
            color_topic: numpy_to_image(np.ascontiguousarray(color), encoding, stamp, "camera_color_optical_frame"),
            f"{prefix}/color/camera_info": camera_info_msg(frame.intrinsics, stamp, "camera_color_optical_frame"),
            f"{prefix}/aligned_depth_to_color/image_raw": numpy_to_image(frame.depth_mm, "16UC1", stamp, "x"),
        }
        for topic, _msgtype in streams:
            writer.write(topic, frame.stamp_ns, serialize_message(messages[topic]))
    writer.close()


def test_a_lab_bag_of_realsense2_cameras_topics_plays_bgr8_as_rgb(workcell, tmp_path):
    frames = [workcell.capture()[0] for _ in range(3)]
    write_lab_bag(tmp_path / "lab", frames)
    assert bag_streams(tmp_path / "lab").color == "/camera/camera/color/image_raw"
    camera = BagCamera(tmp_path / "lab" / "lab.mcap")  # the bag's .mcap names it too
    camera.start()
    played = [camera.read(1.0) for _ in frames]
    assert camera.read(1.0) is None and camera.finished
    for original, frame in zip(frames, played, strict=True):
        np.testing.assert_array_equal(frame.color, original.color)
        np.testing.assert_array_equal(frame.depth_mm, original.depth_mm)
        assert frame.recorded_stamp_ns == original.stamp_ns and frame.intrinsics == original.intrinsics


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no_depth", "missing /camera/camera/aligned_depth_to_color/image_raw (sensor_msgs/msg/Image)"),
        ("mono8", "colour /camera/camera/color/image_raw has encoding 'mono8'; the camera takes rgb8, bgr8"),
    ],
)
def test_a_bag_without_a_camera_a_trial_can_use_is_refused_before_anything_starts(workcell, tmp_path, kind, message):
    frame = workcell.capture()[0]
    if kind == "no_depth":  # a lab that recorded the raw depth only
        write_lab_bag(tmp_path / "bag", [frame], depth=False)
    else:
        frame.color = np.ascontiguousarray(frame.color[..., 0])
        write_lab_bag(tmp_path / "bag", [frame], encoding="mono8")
    with pytest.raises(
        ValueError, match=f"bag:={tmp_path / 'bag'}: .*{message}".replace("(", r"\(").replace(")", r"\)")
    ):
        GraphArgs(camera="bag", executor="moveit", policy="vla_r1", bag=str(tmp_path / "bag"))
