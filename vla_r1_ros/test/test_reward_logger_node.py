"""The reward logger node with real rclpy messages: a LogEpisode call carries the whole trial (frame set,
scene, raw answers, plan, outcome); the logger writes it once, confirms it only when it is on disk, and
announces the index line on `vla_r1/episode_logged`. It subscribes to no camera topic."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from test_episodes import BASE_T_CAMERA, INTRINSICS, scene
from vla_r1_interfaces.msg import EpisodeRecord, VlaPrediction
from vla_r1_interfaces.srv import LogEpisode

from vla_r1_ros import topics
from vla_r1_ros.core import episodes, prompts
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.episodes import EpisodeStoreError
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.scene import reference_box, reference_waypoints
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import camera_info_msg, ns_to_stamp, numpy_to_image, point_msg
from vla_r1_ros.nodes.plan_msgs import plan_json
from vla_r1_ros.nodes.prediction_msgs import prediction_msg
from vla_r1_ros.nodes.reward_logger_node import RewardLoggerNode
from vla_r1_ros.nodes.scene_msgs import scene_to_msg
from vla_r1_ros.testing.ros import spin_until

STAMP_NS = 1_700_000_000_123_456_789
OPTICAL = "camera_color_optical_frame"
INSTRUCTION = "put the red cube in the tray"
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def color_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (INTRINSICS.height, INTRINSICS.width, 3), dtype=np.uint8)


def ground_truth_answers() -> dict[str, str]:
    target = scene().object("red_cube")
    return {
        prompts.AFFORDANCE: prompts.format_answer("the red cube", reference_box(target, INTRINSICS)),
        prompts.TRAJECTORY: prompts.format_answer(
            "to the tray", reference_waypoints(scene(), target, INTRINSICS, BASE_T_CAMERA)
        ),
    }


def record_msg(
    trial_id: str = "trial-1", answers: dict[str, str] | None = None, seed: int = 2, with_frames=True, depth=None
) -> EpisodeRecord:
    """The EpisodeRecord the planning node builds at the end of a trial."""
    answers = ground_truth_answers() if answers is None else answers
    stamp = ns_to_stamp(STAMP_NS)
    msg = EpisodeRecord(trial_id=trial_id, instruction=INSTRUCTION, tasks=list(answers))
    msg.header.stamp = stamp
    msg.prompts = [prompts.build_prompt(INSTRUCTION, task) for task in answers]
    if with_frames:
        depth = np.full((INTRINSICS.height, INTRINSICS.width), 650 + seed, np.uint16) if depth is None else depth
        msg.color = numpy_to_image(color_image(seed), "rgb8", stamp, OPTICAL)
        msg.depth = numpy_to_image(depth, "16UC1" if depth.dtype == np.uint16 else "32FC1", stamp, OPTICAL)
        msg.camera_info = camera_info_msg(INTRINSICS, stamp, OPTICAL)
        msg.has_scene, msg.scene = True, scene_to_msg(scene(), stamp, "panda_link0")
    size = (INTRINSICS.width, INTRINSICS.height)
    prediction = Prediction(INSTRUCTION, tuple(answers), tuple(answers.values()), size, "scripted:test", 0.5)
    msg.prediction = prediction_msg(prediction, stamp, OPTICAL)
    msg.executed_ee_path = [point_msg((0.4, 0.0, 0.1))]
    msg.success, msg.outcome_source, msg.message = True, "simulator", "red_cube placed in the tray"
    msg.stage_names = ["perceive", "predict", "lift", "plan", "execute"]
    msg.stage_seconds = [0.1, 0.5, 0.01, 0.02, 4.0]
    return msg


@pytest.fixture
def graph(executor, tmp_path):
    """The logger plus a client node with what the planning node has: the LogEpisode client."""
    logger = RewardLoggerNode(
        ProcessContext(PackageConfig.load()), parameter_overrides=[Parameter("log_dir", value=str(tmp_path / "log"))]
    )
    client = rclpy.create_node("planning_stand_in")
    executor.add_node(logger)
    executor.add_node(client)
    log_client = client.create_client(LogEpisode, topics.LOG_EPISODE)
    logged: list[dict] = []
    client.create_subscription(String, topics.EPISODE_LOGGED, lambda m: logged.append(json.loads(m.data)), RELIABLE)
    assert spin_until(executor, log_client.service_is_ready, 30.0)
    assert spin_until(executor, lambda: logger.logged_pub.get_subscription_count() > 0, 10.0)
    return logger, log_client, logged


def deliver(executor, log_client, msg: EpisodeRecord) -> LogEpisode.Response:
    future = log_client.call_async(LogEpisode.Request(record=msg))
    assert spin_until(executor, future.done, 20.0), "the logger did not answer"
    return future.result()


def test_episode_written_from_the_record_alone(executor, graph):
    logger, log_client, logged = graph
    response = deliver(executor, log_client, record_msg())
    assert response.logged and response.episode == "000001" and not response.message
    entry = json.loads(response.index_line)
    assert spin_until(executor, lambda: logged == [entry], 5.0)
    root = logger.store.root
    assert episodes.read_index(root) == [entry]
    np.testing.assert_array_equal(episodes.load_color(root, "000001"), color_image(2))
    assert int(episodes.load_depth(root, "000001")[0, 0]) == 652
    document = episodes.load_episode(root, "000001")
    # The simulator's ground truth came in the record: rewards against it, the answers are that truth.
    assert document["references"]["source"] == "simulator" and document["references"]["target"] == "red_cube"
    assert document["rewards"]["total"] == pytest.approx(1.0) and entry["rewards"]["region"] == pytest.approx(1.0)
    assert document["outcome"] == {
        "success": True,
        "failure_stage": "",
        "outcome_source": "simulator",
        "message": "red_cube placed in the tray",
    }
    assert document["prompts"] == [prompts.build_prompt(INSTRUCTION, t) for t in prompts.TASKS]
    assert document["prediction"]["model_id"] == "scripted:test" and document["notes"] == []
    assert document["camera"]["k"] == pytest.approx(list(INTRINSICS.k.reshape(-1)))
    assert list(document["timings"]) == ["perceive", "predict", "lift", "plan", "execute"]


def test_a_repeated_delivery_logs_nothing_twice_even_after_a_restart(executor, graph, tmp_path):
    logger, log_client, logged = graph
    first = deliver(executor, log_client, record_msg("trial-a"))
    again = deliver(executor, log_client, record_msg("trial-a"))  # its first answer was lost, say
    assert first.logged and again.logged and again.episode == first.episode == "000001"
    assert again.index_line == first.index_line
    # Written once, announced at each delivery: the first announcement may have died with a logger.
    assert spin_until(executor, lambda: len(logged) == 2, 5.0) and logged[0] == logged[1]
    assert len(episodes.read_index(logger.store.root)) == 1

    # A new logger on the same log (respawned after a crash) knows what is on disk already.
    executor.remove_node(logger)
    logger.destroy_node()
    respawned = RewardLoggerNode(
        ProcessContext(PackageConfig.load()), parameter_overrides=[Parameter("log_dir", value=str(tmp_path / "log"))]
    )
    executor.add_node(respawned)
    assert deliver(executor, log_client, record_msg("trial-a")).episode == "000001"
    assert deliver(executor, log_client, record_msg("trial-b")).episode == "000002"
    assert [e["trial_id"] for e in episodes.read_index(respawned.store.root)] == ["trial-a", "trial-b"]


def test_a_record_without_frames_is_still_logged(executor, graph):
    """A trial that timed out before a frame came carries no frames and no answer, and claims nothing."""
    logger, log_client, _logged = graph
    record = record_msg(with_frames=False)
    record.prediction = VlaPrediction()
    record.success, record.failure_stage, record.outcome_source = False, "timeout", "none"
    record.message, record.executed_ee_path = "no camera frame set within 5 s", []
    response = deliver(executor, log_client, record)
    assert response.logged
    document = episodes.load_episode(logger.store.root, response.episode)
    assert document["files"] == {"color": None, "depth": None}
    assert any("no colour frame" in note for note in document["notes"])
    # No scene: no ground truth, and the trial's own answer is never its reference.
    assert document["references"]["source"] == "none" and document["rewards"]["total"] is None


def forged(**changes):
    """The record of a simulated success with one part of its evidence taken away or changed."""
    record = record_msg(trial_id="forged-1")
    for key, value in changes.items():
        setattr(record, key, value)
    return record


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (
            forged(color=Image(), depth=Image(), camera_info=CameraInfo(), has_scene=False),
            "without the simulator's scene",
        ),
        (forged(color=Image(), depth=Image(), camera_info=CameraInfo()), "a success without its frame set"),
        (forged(prediction=VlaPrediction()), "a success without the policy's answer"),
        (forged(has_scene=False), "judged by the simulator without the simulator's scene"),
        (forged(trial_id="../../etc"), "is not a trial id"),
        (forged(trial_id=""), "is not a trial id"),
        (forged(failure_stage="grasp"), "a success with failure_stage 'grasp'"),
        (forged(outcome_source="executor"), "outcome_source 'executor' is not one of"),
        (forged(success=False, failure_stage="teleported"), "failure_stage 'teleported' is not one of"),
        (forged(success=False, failure_stage="place", outcome_source="pipeline"), "judges only failures before"),
        (forged(outcome_source="gripper"), "only ever judges a failure"),
        (forged(outcome_source="vision"), "judged by the camera without the frame set it judged"),
    ],
)
def test_a_forged_record_is_refused_says_why_and_logs_nothing(executor, graph, record, why):
    """What anyone on the graph could send to vla_r1/log_episode (4 of 4 such records used to be logged
    as successes): each is answered logged=false with the reason, and the log stays empty."""
    logger, log_client, logged = graph
    response = deliver(executor, log_client, record)
    assert not response.logged and response.episode == "" and why in response.message, response.message
    assert response.message.startswith("refused, nothing logged:")
    assert episodes.read_index(logger.store.root) == [] and logged == []
    assert not (logger.store.root / episodes.EPISODES_DIR).exists() or not any(
        (logger.store.root / episodes.EPISODES_DIR).iterdir()
    )
    assert deliver(executor, log_client, record_msg("trial-after")).logged  # the logger goes on


def test_a_camera_judged_record_keeps_its_after_frames_masks_and_both_verdicts(executor, graph):
    """The camera judge's evidence reaches the episode: after frames, the masks, its verdict, and the
    simulator's verdict beside it (the audit of the camera), in episode.json and the index line."""
    logger, log_client, _logged = graph
    record = record_msg("trial-vision")
    mask = np.zeros((INTRINSICS.height, INTRINSICS.width), np.uint8)
    mask[10:20, 30:40] = 255
    record.outcome_source, record.has_after_frames = "vision", True
    record.after_color, record.after_depth = record.color, record.depth
    record.judge_mask_names, record.judge_masks = ["tray_new"], [numpy_to_image(mask, "mono8")]
    verdict = {"judged": True, "success": True, "failure_stage": "", "confidence": 0.97, "message": "in the tray"}
    record.vision_verdict = json.dumps(verdict | {"in_tray": ["red_cube"], "asks_operator": False})
    record.has_simulator_verdict, record.simulator_success, record.simulator_failure_stage = True, False, "place"
    response = deliver(executor, log_client, record)
    assert response.logged, response.message
    folder = logger.store.root / episodes.EPISODES_DIR / response.episode
    document = json.loads((folder / "episode.json").read_text())
    assert document["files"]["after_color"] == "after_color.png" and (folder / "after_depth.png").is_file()
    saved = cv2.imread(str(folder / document["files"]["judge_masks"]["tray_new"]), cv2.IMREAD_UNCHANGED)
    assert saved.shape == mask.shape and (saved > 0).sum() == 100
    assert document["vision_judge"]["confidence"] == 0.97 and document["vision_judge"]["in_tray"] == ["red_cube"]
    assert document["simulator_success"] is False and document["simulator_failure_stage"] == "place"
    line = json.loads(response.index_line)
    assert line["simulator_success"] is False and line["vision_judge"]["success"] is True
    assert line["outcome_source"] == "vision"


def test_metric_depth_is_stored_as_millimetres(executor, graph):
    logger, log_client, _logged = graph
    metres = np.full((INTRINSICS.height, INTRINSICS.width), 0.75, np.float32)
    metres[0, 0] = np.nan  # a depth hole of a 32FC1 driver
    response = deliver(executor, log_client, record_msg(depth=metres))
    depth = episodes.load_depth(logger.store.root, response.episode)
    assert depth.dtype == np.uint16 and int(depth[0, 0]) == 0 and int(depth[1, 1]) == 750


def test_a_refused_write_is_answered_and_the_record_can_come_again(executor, graph, monkeypatch):
    logger, log_client, logged = graph
    real_write = logger.store.write

    def disk_full(*args, **kwargs):
        raise EpisodeStoreError("cannot write episode 000001: disk full")

    monkeypatch.setattr(logger.store, "write", disk_full)
    response = deliver(executor, log_client, record_msg("trial-full"))
    assert not response.logged and "disk full" in response.message and not response.index_line
    assert episodes.read_index(logger.store.root) == [] and logged == []
    monkeypatch.setattr(logger.store, "write", real_write)  # the disk has room again
    response = deliver(executor, log_client, record_msg("trial-full"))
    assert response.logged and response.episode == "000001"


def test_unwritable_log_dir_stops_the_node(ros, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EpisodeStoreError, match="not a directory"):
        RewardLoggerNode(
            ProcessContext(PackageConfig.load()), parameter_overrides=[Parameter("log_dir", value=str(blocker / "log"))]
        )


def test_plan_conversion():
    from geometry_msgs.msg import Pose
    from vla_r1_interfaces.msg import ManipulationPlan

    rejected = ManipulationPlan(feasible=False, failed_check="lift", reason="no depth")
    assert plan_json(rejected) == {"feasible": False, "failed_check": "lift", "reason": "no depth"}
    carry = Pose()
    carry.position.x, carry.orientation.w = 0.4, 1.0
    plan = plan_json(ManipulationPlan(feasible=True, carry_waypoints=[carry, carry]))
    assert plan["carry_waypoints"][0] == {"position": [0.4, 0.0, 0.0], "orientation": [0.0, 0.0, 0.0, 1.0]}
    assert set(plan) >= {"grasp_pose", "place_pose", "pre_grasp_pose", "grasp_surface_point", "speed_scaling"}


def test_an_unusable_log_dir_stops_the_logger_with_one_line_naming_it(tmp_path):
    """The real node process, its log_dir under a plain file: one line naming the folder, a failed exit."""
    import subprocess
    import sys

    (tmp_path / "a_file").write_text("")
    log_dir = tmp_path / "a_file" / "log"
    done = subprocess.run(
        [sys.executable, "-m", "vla_r1_ros.nodes.reward_logger_node", "--ros-args", "-p", f"log_dir:={log_dir}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, lines
    assert f"cannot create the episode log in {log_dir}" in lines[0] and "Traceback" not in lines[0]
