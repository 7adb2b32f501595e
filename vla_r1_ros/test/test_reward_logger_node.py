"""The reward logger node with real rclpy messages: frames matched by stamp, episodes written, index line
published on `vla_r1/episode_logged`."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from test_episodes import BASE_T_CAMERA, INTRINSICS, scene
from vla_r1_interfaces.msg import EpisodeRecord, SceneState

from vla_r1_ros.core import episodes, prompts
from vla_r1_ros.core.episodes import EpisodeStoreError
from vla_r1_ros.core.parsing import parse_answer
from vla_r1_ros.core.scene import reference_box, reference_waypoints
from vla_r1_ros.nodes import reward_logger_node as logger_module
from vla_r1_ros.nodes.conversions import camera_info_msg, ns_to_stamp, numpy_to_image, point_msg
from vla_r1_ros.nodes.perception_node import FRAME_QOS  # the camera publishers the logger listens to
from vla_r1_ros.nodes.prediction_msgs import prediction_msg
from vla_r1_ros.nodes.reward_logger_node import RewardLoggerNode
from vla_r1_ros.nodes.scene_msgs import scene_to_msg
from vla_r1_ros.testing.ros import spin_until

STAMP_NS = 1_700_000_000_123_456_789
OPTICAL = "camera_color_optical_frame"
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def color_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (INTRINSICS.height, INTRINSICS.width, 3), dtype=np.uint8)


def episode_msg(stamp_ns: int, answers: dict[str, str], success: bool = True, executed=()) -> EpisodeRecord:
    instruction = "put the red cube in the tray"
    msg = EpisodeRecord()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.trial_id = f"trial-{stamp_ns}"
    msg.instruction = instruction
    msg.prediction = prediction_msg(
        stamp=ns_to_stamp(stamp_ns),
        frame_id=OPTICAL,
        instruction=instruction,
        model_id="scripted:test",
        image_size=(INTRINSICS.width, INTRINSICS.height),
        tasks=list(answers),
        raw_texts=list(answers.values()),
        parsed=[parse_answer(text, task) for task, text in answers.items()],
        latency_s=0.5,
    )
    msg.executed_ee_path = [point_msg(p) for p in executed]
    msg.success = success
    msg.failure_stage = "" if success else "grasp"
    msg.stage_names = ["predict", "lift", "plan", "execute"]
    msg.stage_seconds = [0.5, 0.01, 0.02, 4.0]
    return msg


def ground_truth_answers() -> dict[str, str]:
    target = scene().object("red_cube")
    return {
        prompts.AFFORDANCE: prompts.format_answer("the red cube", reference_box(target, INTRINSICS)),
        prompts.TRAJECTORY: prompts.format_answer(
            "to the tray", reference_waypoints(scene(), target, INTRINSICS, BASE_T_CAMERA)
        ),
    }


@pytest.fixture
def graph(executor, tmp_path):
    """The logger plus a test node with the publishers the graph would have, all matched."""
    overrides = [
        Parameter("log_dir", value=str(tmp_path / "log")),
        Parameter("retry_period_s", value=0.2),
        Parameter("late_message_wait_s", value=1.5),
    ]
    logger = RewardLoggerNode(parameter_overrides=overrides)
    source = rclpy.create_node("episode_source")
    executor.add_node(logger)
    executor.add_node(source)
    pubs = {
        "color": source.create_publisher(Image, logger_module.COLOR_TOPIC, FRAME_QOS),
        "depth": source.create_publisher(Image, logger_module.DEPTH_TOPIC, FRAME_QOS),
        "info": source.create_publisher(CameraInfo, logger_module.INFO_TOPIC, FRAME_QOS),
        "scene": source.create_publisher(SceneState, logger_module.SCENE_TOPIC, 10),
        "episode": source.create_publisher(EpisodeRecord, logger_module.EPISODE_TOPIC, 10),
    }
    logged: list[dict] = []
    source.create_subscription(
        String, logger_module.LOGGED_TOPIC, lambda m: logged.append(json.loads(m.data)), RELIABLE
    )
    assert spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 10.0)
    assert spin_until(executor, lambda: logger.logged_pub.get_subscription_count() > 0, 10.0)
    return logger, pubs, logged


def publish_frame(pubs, stamp_ns: int, seed: int, with_scene: bool = True) -> None:
    stamp = ns_to_stamp(stamp_ns)
    depth = np.full((INTRINSICS.height, INTRINSICS.width), 650 + seed, dtype=np.uint16)
    pubs["color"].publish(numpy_to_image(color_image(seed), "rgb8", stamp, OPTICAL))
    pubs["depth"].publish(numpy_to_image(depth, "16UC1", stamp, OPTICAL))
    pubs["info"].publish(camera_info_msg(INTRINSICS, stamp, OPTICAL))
    if with_scene:
        pubs["scene"].publish(scene_to_msg(scene(), stamp, "panda_link0"))


def test_episode_written_with_the_frame_of_its_stamp(executor, graph):
    logger, pubs, logged = graph
    # Three frames; the trial used the middle one.
    for offset, seed in ((-33_000_000, 1), (0, 2), (33_000_000, 3)):
        publish_frame(pubs, STAMP_NS + offset, seed)
    assert spin_until(
        executor, lambda: logger._buffers[logger_module.SCENE_TOPIC].find(STAMP_NS + 33_000_000, 0) is not None, 10.0
    )
    pubs["episode"].publish(episode_msg(STAMP_NS, ground_truth_answers()))
    assert spin_until(executor, lambda: len(logged) == 1, 15.0)

    entry = logged[0]
    assert entry["episode"] == "000001" and entry["trial_id"] == f"trial-{STAMP_NS}"
    assert entry["reference_source"] == "simulator"
    assert entry["rewards"]["total"] == pytest.approx(1.0, abs=1e-5)  # the answers ARE the ground truth
    assert entry["stage_seconds"] == {"predict": 0.5, "lift": 0.01, "plan": 0.02, "execute": 4.0}
    root = logger.store.root
    assert episodes.read_index(root) == [entry]
    np.testing.assert_array_equal(episodes.load_color(root, "000001"), color_image(2))
    assert int(episodes.load_depth(root, "000001")[0, 0]) == 652
    document = episodes.load_episode(root, "000001")
    assert document["notes"] == []
    assert document["camera"]["frame_id"] == OPTICAL and document["camera"]["k"] == INTRINSICS.k.reshape(-1).tolist()
    assert document["references"]["target"] == "red_cube"
    assert document["prediction"]["parsed"]["reasoning"][prompts.AFFORDANCE] == "the red cube"
    assert document["prediction"]["raw_texts"] == ground_truth_answers()


def test_a_scene_arriving_after_its_episode_is_still_used(executor, graph):
    """Reliable delivery can repair a lost sample seconds late (seen in the sim demo for workcell/scene):
    the episode waits for its frame's late messages up to late_message_wait_s."""
    logger, pubs, logged = graph
    publish_frame(pubs, STAMP_NS - 200_000_000, 1)  # an earlier frame: the scene topic is alive
    publish_frame(pubs, STAMP_NS, 2, with_scene=False)  # the trial's frame; its scene is late
    assert spin_until(executor, lambda: logger._buffers[logger_module.INFO_TOPIC].find(STAMP_NS, 0) is not None, 10.0)
    pubs["episode"].publish(episode_msg(STAMP_NS, ground_truth_answers()))
    spin_until(executor, lambda: False, 0.5)
    assert logged == []  # still waiting for the scene
    pubs["scene"].publish(scene_to_msg(scene(), ns_to_stamp(STAMP_NS), "panda_link0"))
    assert spin_until(executor, lambda: len(logged) == 1, 10.0)
    assert logged[0]["reference_source"] == "simulator"
    assert logged[0]["rewards"]["total"] == pytest.approx(1.0, abs=1e-5)


def test_trial_without_a_frame_is_still_logged(executor, graph):
    logger, pubs, logged = graph
    publish_frame(pubs, STAMP_NS, 2, with_scene=False)  # a real robot: no ground truth
    assert spin_until(executor, lambda: logger._buffers[logger_module.INFO_TOPIC].find(STAMP_NS, 0) is not None, 10.0)
    executed = np.linspace([0.45, 0.05, 0.15], [0.45, 0.3, 0.2], 30)
    late = STAMP_NS + 10_000_000_000  # no colour / depth frame with this stamp was ever received
    pubs["episode"].publish(episode_msg(late, ground_truth_answers(), executed=executed))
    assert spin_until(executor, lambda: len(logged) == 1, 15.0)

    entry = logged[0]
    assert not entry["has_color"] and not entry["has_depth"]
    assert entry["reference_source"] == "successful_trial"  # executed path projected through the camera
    document = episodes.load_episode(logger.store.root, entry["episode"])
    assert any("no colour frame" in note for note in document["notes"])
    assert any("camera info from stamp" in note for note in document["notes"])  # the newest intrinsics
    assert len(document["references"]["waypoints"]) == 4
    assert len(document["executed_ee_path"]) == 30


def test_failed_write_is_retried_not_dropped(executor, graph, monkeypatch):
    logger, pubs, logged = graph
    real_write = logger.store.write
    attempts = []

    def full_once(*args, **kwargs):
        attempts.append(args[0].trial_id)
        if len(attempts) == 1:
            raise EpisodeStoreError("cannot write episode 000001 to …: disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(logger.store, "write", full_once)
    pubs["episode"].publish(episode_msg(STAMP_NS, ground_truth_answers()))
    assert spin_until(executor, lambda: len(logged) == 1, 15.0)
    assert attempts == [f"trial-{STAMP_NS}"] * 2 and logged[0]["episode"] == "000001"


class RecordingLogger:
    """The node's logger, keeping the error messages for the test to read."""

    def __init__(self, logger):
        self._logger = logger
        self.errors: list[str] = []

    def error(self, message, **kwargs):
        self.errors.append(message)
        return self._logger.error(message, **kwargs)

    def __getattr__(self, name):
        return getattr(self._logger, name)


def fail_then_shut_down(executor, logger, pubs, write, monkeypatch) -> tuple[list, RecordingLogger]:
    """Publish one trial with `write` as the store's write, let the writer fail on it (and the timer
    retry it), then destroy the logger from this thread. Returns the threads the write attempts ran on,
    in order, and the logger's error messages from shutdown."""
    attempts: list[threading.Thread] = []

    def recorded_write(*args, **kwargs):
        attempts.append(threading.current_thread())
        return write(*args, **kwargs)

    monkeypatch.setattr(logger.store, "write", recorded_write)
    pubs["episode"].publish(episode_msg(STAMP_NS, ground_truth_answers()))
    assert spin_until(executor, lambda: len(attempts) >= 2, 15.0)  # the write and a timer retry, both failed
    recording = RecordingLogger(logger.get_logger())
    monkeypatch.setattr(logger, "get_logger", lambda: recording)
    executor.remove_node(logger)  # so the fixture does not destroy it again
    logger.destroy_node()
    return attempts, recording


def test_write_failing_at_shutdown_is_retried_then_saved_outside_the_log(executor, graph, monkeypatch, tmp_path):
    logger, pubs, logged = graph
    rescue_dir = tmp_path / "unlogged"
    monkeypatch.setattr(logger_module, "unlogged_trials_dir", lambda: rescue_dir)
    refused = []

    def disk_full(record, frame, references, notes):
        refused.append((record, list(notes)))
        raise EpisodeStoreError("cannot write episode 000001 to …: disk full")

    attempts, recording = fail_then_shut_down(executor, logger, pubs, disk_full, monkeypatch)

    assert attempts.count(threading.current_thread()) == 1  # retried once more, by destroy_node itself
    assert attempts[-1] is threading.current_thread() and len(attempts) >= 3
    assert episodes.read_index(logger.store.root) == [] and logged == []
    trial_id = f"trial-{STAMP_NS}"
    saved = rescue_dir / f"{trial_id}.json"
    assert sorted(rescue_dir.iterdir()) == [saved]
    document = json.loads(saved.read_text(encoding="utf-8"))
    assert document["trial_id"] == trial_id and document["episode"] is None
    assert "disk full" in document["error"] and document["log_dir"] == str(logger.store.root)
    trial, notes = refused[-1]
    assert episodes.trial_from_document(document) == trial  # the whole trial, readable back for re-logging
    assert document["notes"] == notes and any("no colour frame" in note for note in notes)
    assert any(str(saved) in message and trial_id in message for message in recording.errors)


def test_write_recovering_by_shutdown_is_logged_at_shutdown(executor, graph, monkeypatch, tmp_path):
    logger, pubs, _ = graph
    rescue_dir = tmp_path / "unlogged"
    monkeypatch.setattr(logger_module, "unlogged_trials_dir", lambda: rescue_dir)
    real_write = logger.store.write
    test_thread = threading.current_thread()

    def full_until_shutdown(*args, **kwargs):
        # Full while the node runs (the writer thread); freed by the time destroy_node retries (this thread).
        if threading.current_thread() is not test_thread:
            raise EpisodeStoreError("cannot write episode 000001 to …: disk full")
        return real_write(*args, **kwargs)

    attempts, _ = fail_then_shut_down(executor, logger, pubs, full_until_shutdown, monkeypatch)

    assert attempts.count(test_thread) == 1 and attempts[-1] is test_thread
    entries = episodes.read_index(logger.store.root)
    assert [(e["episode"], e["trial_id"]) for e in entries] == [("000001", f"trial-{STAMP_NS}")]
    assert episodes.load_episode(logger.store.root, "000001")["trial_id"] == f"trial-{STAMP_NS}"
    assert not rescue_dir.exists() and not logger._failed


def test_trial_that_cannot_be_saved_anywhere_is_logged_whole(executor, graph, monkeypatch, tmp_path):
    logger, pubs, _ = graph
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(logger_module, "unlogged_trials_dir", lambda: blocker / "unlogged")  # not creatable

    def disk_full(*args, **kwargs):
        raise EpisodeStoreError("cannot write episode 000001 to …: disk full")

    _, recording = fail_then_shut_down(executor, logger, pubs, disk_full, monkeypatch)

    trial_id = f"trial-{STAMP_NS}"
    [message] = [m for m in recording.errors if "not saved" in m]
    assert trial_id in message and "disk full" in message
    document = json.loads(message.split("the trial: ", 1)[1])
    assert document["trial_id"] == trial_id and document["prediction"]["raw_texts"] == ground_truth_answers()


def test_unwritable_log_dir_stops_the_node(ros, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EpisodeStoreError, match="not a directory"):
        RewardLoggerNode(parameter_overrides=[Parameter("log_dir", value=str(blocker / "log"))])


def test_message_conversions():
    from geometry_msgs.msg import Pose
    from vla_r1_interfaces.msg import ManipulationPlan

    metres = np.array([[0.5, np.nan], [1.234, 0.0]], dtype=np.float32)
    assert logger_module.depth_to_mm(numpy_to_image(metres, "32FC1")).tolist() == [[500, 0], [1234, 0]]
    rejected = ManipulationPlan(feasible=False, failed_check="lift", reason="no depth")
    assert logger_module.plan_json(rejected) == {"feasible": False, "failed_check": "lift", "reason": "no depth"}
    carry = Pose()
    carry.position.x, carry.orientation.w = 0.4, 1.0
    plan = logger_module.plan_json(ManipulationPlan(feasible=True, carry_waypoints=[carry, carry]))
    assert plan["carry_waypoints"][0] == {"position": [0.4, 0.0, 0.0], "orientation": [0.0, 0.0, 0.0, 1.0]}
    assert set(plan) >= {"grasp_pose", "place_pose", "pre_grasp_pose", "grasp_surface_point", "speed_scaling"}
