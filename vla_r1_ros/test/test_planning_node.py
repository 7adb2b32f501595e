"""The planning node with real rclpy: it owns each trial. ExecuteInstruction goals end with the object in
the tray and ONE logged episode holding the trial's own frame set; a plan outside the workspace is
rejected and nothing moves; plan_only never moves; a trial's record waits for the logger until it is on
disk.

The planning node and the reward logger are real, and the node drives the simulated Panda
(SimArmExecutor on a PyBullet workcell) — or, in the MoveIt test, the MoveIt executor on a TEST DOUBLE
of moveit_py (test/moveit_jazzy_double.py), which cannot be installed here. The camera and the model
are test stand-ins: a node publishes the workcell's colour, depth, camera info and scene as the
perception node does, and another serves
`vla_r1/predict` by answering from the ground truth the goal carries (the reference box and waypoints of
the object the instruction names, written in the model's text format).
"""

from __future__ import annotations

import json
import re
import threading
import time

import numpy as np
import pytest
from rclpy.action import ActionClient, ActionServer
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from vla_r1_interfaces.action import ExecuteInstruction, Predict
from vla_r1_interfaces.msg import ManipulationPlan, SceneState

from vla_r1_ros import topics
from vla_r1_ros.core import episodes
from vla_r1_ros.core.config import PackageConfig, load_config
from vla_r1_ros.core.episodes import EpisodeStoreError
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.prompts import format_answer
from vla_r1_ros.core.scene import reference_box, reference_waypoints, resolve_target
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import camera_info_msg, image_to_numpy, ns_to_stamp, numpy_to_image, stamp_to_ns
from vla_r1_ros.nodes.perception_node import FRAME_QOS  # what the camera publishes with
from vla_r1_ros.nodes.prediction_msgs import prediction_msg
from vla_r1_ros.nodes.scene_msgs import scene_from_msg, scene_to_msg
from vla_r1_ros.testing.ros import spin_until

CAMERA = load_config("camera")
BASE_T_CAMERA = camera_extrinsics(CAMERA)
OPTICAL = CAMERA["frames"]["camera_optical"]


class GroundTruthCamera(Node):
    """Test stand-in for the perception node with the sim source: colour, depth, camera info and scene
    of each workcell frame, at 5 Hz, with one stamp."""

    def __init__(self, workcell):
        super().__init__("ground_truth_camera")
        self.workcell = workcell
        # Stopping by a flag, not by cancelling the timer: rclpy's MultiThreadedExecutor calls a ready
        # timer in a worker thread, and a timer cancelled in between raises RCLError at the next spin.
        self._capturing = threading.Lock()
        self._stopped = False
        self.pubs = {
            "color": self.create_publisher(Image, topics.COLOR, FRAME_QOS),
            "depth": self.create_publisher(Image, topics.DEPTH, FRAME_QOS),
            "info": self.create_publisher(CameraInfo, topics.CAMERA_INFO, FRAME_QOS),
            "scene": self.create_publisher(SceneState, topics.SCENE, FRAME_QOS),
        }
        # One capture at a time: a reentrant timer whose render outlasts its period piles captures up on
        # the capture lock and can take every executor thread, starving the planning node of frames.
        self.create_timer(0.2, self.publish_frame, callback_group=MutuallyExclusiveCallbackGroup())

    def stop_camera(self) -> None:
        """Publish no more frames; returns once a capture in flight has finished."""
        with self._capturing:
            self._stopped = True

    def publish_frame(self) -> None:
        with self._capturing:
            if self._stopped:
                return
            frame, scene = self.workcell.capture()
            stamp = ns_to_stamp(frame.stamp_ns)
            self.pubs["color"].publish(numpy_to_image(frame.color, "rgb8", stamp, OPTICAL))
            self.pubs["depth"].publish(numpy_to_image(frame.depth_mm, "16UC1", stamp, OPTICAL))
            self.pubs["info"].publish(camera_info_msg(frame.intrinsics, stamp, OPTICAL))
            self.pubs["scene"].publish(scene_to_msg(scene, stamp, "panda_link0"))


class GroundTruthModel(Node):
    """Test stand-in for the inference node: answers a Predict goal from the ground truth the goal carries
    (or, for a real camera's goal, which carries none, from `scene_source()`). `place_override` replaces
    the last waypoint (base frame); `goals` keeps every goal."""

    def __init__(self, intrinsics, scene_source=None):
        super().__init__("ground_truth_model")
        self.intrinsics = intrinsics
        self.scene_source = scene_source
        self.place_override: np.ndarray | None = None
        self.think_s = 0.0  # how long the stand-in model "thinks"
        self.goals: list[Predict.Goal] = []
        self.server = ActionServer(self, Predict, topics.PREDICT, self.predict, callback_group=ReentrantCallbackGroup())

    def predict(self, goal_handle) -> Predict.Result:
        goal = goal_handle.request
        self.goals.append(goal)
        k = self.intrinsics
        scene = scene_from_msg(goal.scene) if goal.has_scene else self.scene_source()
        target = resolve_target(goal.instruction, scene.objects)
        path = reference_waypoints(scene, target, k, BASE_T_CAMERA)
        if self.place_override is not None:
            path[-1] = k.project(BASE_T_CAMERA.inverse().apply(self.place_override)) / [k.width, k.height]
        texts = (
            format_answer(f"the {target.name} is in the box", reference_box(target, k)),
            format_answer("from the object to the tray", [tuple(p) for p in path]),
        )
        tasks = ("affordance", "trajectory")
        for task, text in zip(tasks, texts, strict=True):
            goal_handle.publish_feedback(Predict.Feedback(task=task, text=text))
        time.sleep(self.think_s)
        goal_handle.succeed()
        prediction = Prediction(goal.instruction, tasks, texts, (goal.image.width, goal.image.height), "test:truth")
        return Predict.Result(prediction=prediction_msg(prediction, goal.image.header.stamp, OPTICAL))


IDLE_STATUS = {"refusal": "", "undelivered": 0, "log_error": "", "spool_error": ""}  # planning/status


def graph_discovered(executor, action: ActionClient, planning) -> bool:
    """Every endpoint a trial needs has found its peer: the goal's client its server, and the planning
    node its Predict server and its logger (a trial started earlier fails `timeout` on the Predict
    server, as one did in a loaded fresh-clone run). Discovery in one process took over 10 s once."""
    return spin_until(
        executor,
        lambda: (
            action.server_is_ready()
            and planning.predictor.client.server_is_ready()
            and planning.delivery.log_client.service_is_ready()
        ),
        30.0,
    )


def start_logger(executor, log_dir):
    from vla_r1_ros.nodes.reward_logger_node import RewardLoggerNode

    logger = RewardLoggerNode(
        ProcessContext(PackageConfig.load()), parameter_overrides=[Parameter("log_dir", value=str(log_dir))]
    )
    executor.add_node(logger)
    return logger


def planning_graph(executor, workcell, tmp_path, arm, overrides=()):
    """The planning node driving `arm` (with parameter `overrides`), the reward logger, the camera and
    model stand-ins, and a client."""
    from vla_r1_ros.nodes.planning_node import PlanningNode

    planning = PlanningNode(
        ProcessContext(PackageConfig.load(), workcell),
        arm=arm,
        parameter_overrides=[
            Parameter("log_retry_period_s", value=0.3),
            Parameter("max_undelivered", value=1),
            *overrides,
        ],
    )
    camera = GroundTruthCamera(workcell)
    model = GroundTruthModel(workcell.capture()[0].intrinsics, scene_source=workcell.scene)
    logger = start_logger(executor, tmp_path / "log")
    client = Node("trial_client")
    received = {"plans": [], "feedback": []}
    client.create_subscription(ManipulationPlan, topics.PLAN, received["plans"].append, 10)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    received["status"] = []  # planning/status, as a run of trials reads it
    client.create_subscription(
        String, topics.PLANNING_STATUS, lambda msg: received["status"].append(json.loads(msg.data)), latched
    )
    action = ActionClient(client, ExecuteInstruction, topics.EXECUTE_INSTRUCTION)
    for node in (planning, camera, model, client):
        executor.add_node(node)
    assert graph_discovered(executor, action, planning)
    yield {
        "executor": executor,
        "action": action,
        "camera": camera,
        "model": model,
        "planning": planning,
        "logger": logger,
        "client": client,
        "received": received,
        "log_dir": tmp_path / "log",
    }
    camera.stop_camera()  # the module's workcell outlives these nodes: no capture may be in flight


@pytest.fixture
def graph(executor, workcell, tmp_path):
    from vla_r1_ros.executors.sim import SimArmExecutor

    yield from planning_graph(executor, workcell, tmp_path, SimArmExecutor(workcell))


def send_goal(graph, instruction: str, plan_only: bool = False):
    executor, received = graph["executor"], graph["received"]
    goal = ExecuteInstruction.Goal(instruction=instruction, plan_only=plan_only)
    sent = graph["action"].send_goal_async(goal, feedback_callback=lambda fb: received["feedback"].append(fb.feedback))
    assert spin_until(executor, sent.done, 10.0)
    return sent.result()


def run_goal(graph, instruction: str, plan_only: bool = False, timeout_s: float = 60.0):
    handle = send_goal(graph, instruction, plan_only)
    assert handle.accepted
    result = handle.get_result_async()
    assert spin_until(graph["executor"], result.done, timeout_s), "the trial did not finish"
    return result.result().result


def logged(graph, n: int = 1, timeout_s: float = 10.0) -> list[tuple[dict, dict]]:
    """The first `n` logged episodes as (index line, episode.json), waiting for them."""
    root = graph["log_dir"]
    assert spin_until(graph["executor"], lambda: len(episodes.read_index(root)) >= n, timeout_s), "not logged"
    return list(episodes.iter_episodes(root))


def config_for_tray_of(config, scene):
    """`config` as a real cell's that says where its tray stands: `collision.tray_when_unseen` at the tray
    of the simulator's `scene` (a recording of that layout is replayed as a real camera, where the
    planning node measures the tray and refuses trials when it is not where the config says)."""
    import copy
    import dataclasses

    from vla_r1_ros.core.tray import TrayPose

    tray = TrayPose.of(scene.tray)
    workcell = copy.deepcopy(dict(config.workcell))
    workcell["collision"]["tray_when_unseen"] = {
        "centre_base": [float(v) for v in tray.centre],
        "size_m": [float(v) for v in tray.size],
        "yaw_rad": tray.yaw_rad,
    }
    return dataclasses.replace(config, workcell=workcell)


def instruction_for(workcell, seed: int, pick: int = 0):
    workcell.reset(seed)
    target = [o for o in workcell.scene().objects if o.visible][pick]
    return target, f"put the {target.colour} {target.shape} in the tray"


def test_execute_instruction_puts_the_object_in_the_tray_and_logs_its_own_frame(graph, workcell):
    target, instruction = instruction_for(workcell, seed=1)
    result = run_goal(graph, instruction)
    assert result.success, f"{result.failure_stage}: {result.message}"
    assert result.failure_stage == "" and result.episode_id
    assert workcell.object_in_tray(target.name)

    ((entry, document),) = logged(graph)
    assert entry["trial_id"] == result.episode_id and entry["success"] and document["instruction"] == instruction
    assert list(document["timings"]) == ["perceive", "predict", "lift", "plan", "execute"]
    assert len(document["executed_ee_path"]) > 10 and document["plan"]["feasible"]
    assert document["plan"]["grasps_tried"][-1].endswith(": ok")  # the grasp that ran, after any refused
    assert document["outcome"]["outcome_source"] == "simulator"
    # The model was asked about exactly the frame the episode holds, with that frame's ground truth.
    (goal,) = graph["model"].goals
    np.testing.assert_array_equal(episodes.load_color(graph["log_dir"], entry["episode"]), image_to_numpy(goal.image))
    assert stamp_to_ns(goal.scene.header.stamp) == stamp_to_ns(goal.image.header.stamp) == document["stamp_ns"]
    assert document["files"] == {"color": "color.png", "depth": "depth.png"} and document["notes"] == []
    assert entry["reference_source"] == "simulator" and entry["rewards"]["total"] == pytest.approx(1.0, abs=0.02)
    stages = [fb.stage for fb in graph["received"]["feedback"]]
    assert stages[0] == "perceive" and stages[-1] == "done" and "execute" in stages
    assert any(fb.reasoning_chunk.startswith("<think>") for fb in graph["received"]["feedback"])
    assert [p.trial_id for p in graph["received"]["plans"]] == [result.episode_id]


def test_plan_outside_the_workspace_is_rejected_and_nothing_moves(graph, workcell):
    _, instruction = instruction_for(workcell, seed=2)
    graph["model"].place_override = np.array([0.08, 0.2, 0.0])  # behind the workspace's x_min
    before = workcell.joint_positions()
    result = run_goal(graph, instruction)
    assert not result.success and result.failure_stage == "safety"
    assert "workspace" in result.message
    np.testing.assert_allclose(workcell.joint_positions(), before, atol=1e-3)

    plan = graph["received"]["plans"][-1]
    assert not plan.feasible and plan.failed_check == "workspace" and plan.reason
    assert list(plan.grasps_tried) == [f"yaw +0 deg: workspace: {plan.reason}"]  # no other grasp can fix a place
    ((entry, document),) = logged(graph)
    assert entry["failure_stage"] == "safety" and document["plan"]["failed_check"] == "workspace"
    assert document["plan"]["grasps_tried"] == list(plan.grasps_tried)
    assert document["executed_ee_path"] == []


def test_plan_only_plans_never_moves_and_is_a_dry_run(graph, workcell):
    _, instruction = instruction_for(workcell, seed=3)
    before = workcell.joint_positions()
    result = run_goal(graph, instruction, plan_only=True)
    assert not result.success and result.failure_stage == "dry_run" and "plan only" in result.message
    np.testing.assert_allclose(workcell.joint_positions(), before, atol=1e-3)
    plan = graph["received"]["plans"][-1]
    assert plan.feasible and len(plan.joint_trajectory.points) > 10
    ((entry, _),) = logged(graph)
    assert not entry["success"] and entry["failure_stage"] == "dry_run"


def test_cancel_during_execution_stops_the_arm(graph, workcell):
    from action_msgs.msg import GoalStatus

    executor, received = graph["executor"], graph["received"]
    target, instruction = instruction_for(workcell, seed=4)
    handle = send_goal(graph, instruction)
    assert handle.accepted
    assert spin_until(executor, lambda: any(fb.stage == "execute" for fb in received["feedback"]), 30.0)
    handle.cancel_goal_async()
    result = handle.get_result_async()
    assert spin_until(executor, result.done, 30.0)
    assert result.result().status == GoalStatus.STATUS_CANCELED
    assert result.result().result.failure_stage == "cancelled"
    assert_stopped_and_stays(workcell, target)
    ((entry, _),) = logged(graph)
    assert entry["failure_stage"] == "cancelled"


def call_stop(graph) -> Trigger.Response:
    client = graph["client"].create_client(Trigger, topics.STOP)
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(Trigger.Request())
    assert spin_until(graph["executor"], future.done, 10.0)
    return future.result()


def arm_moved(workcell, before: np.ndarray) -> bool:
    return bool(np.max(np.abs(workcell.joint_positions() - before)) > 0.05)


def hold_the_motion_once_it_moves(monkeypatch, workcell, before: np.ndarray) -> None:
    """Once the arm has moved from `before`, its motion holds, still checking `should_stop`, until it is
    stopped. A stop test must not race the motion: on a loaded machine the stop's round trip once took
    longer than the rest of the motion, and the object was in the tray before the stop came."""
    move = workcell.execute_joint_path

    def held_once_moving(path, speed_scaling=0.5, should_stop=None):
        if should_stop is None:  # a motion nobody can stop (a reset) is not held
            return move(path, speed_scaling)

        def stopping() -> bool:
            if arm_moved(workcell, before):
                deadline = time.monotonic() + 60.0
                while not should_stop() and time.monotonic() < deadline:
                    time.sleep(0.02)
            return should_stop()

        return move(path, speed_scaling, stopping)

    monkeypatch.setattr(workcell, "execute_joint_path", held_once_moving)


def wait_until_the_arm_moves(graph, workcell, before: np.ndarray) -> None:
    assert spin_until(graph["executor"], lambda: arm_moved(workcell, before), 30.0)


def assert_stopped_and_stays(workcell, target) -> None:
    assert not workcell.object_in_tray(target.name)
    held = workcell.joint_positions()
    workcell.step(0.5)
    np.testing.assert_allclose(workcell.joint_positions(), held, atol=0.01)


def test_stop_service_halts_an_action_trial_and_aborts_its_goal(graph, workcell, monkeypatch):
    from action_msgs.msg import GoalStatus

    target, instruction = instruction_for(workcell, seed=4)
    before = workcell.joint_positions()
    hold_the_motion_once_it_moves(monkeypatch, workcell, before)
    handle = send_goal(graph, instruction)
    assert handle.accepted
    wait_until_the_arm_moves(graph, workcell, before)
    response = call_stop(graph)
    assert response.success and response.message == "stopped the running trial"
    result = handle.get_result_async()
    assert spin_until(graph["executor"], result.done, 30.0)
    assert result.result().status == GoalStatus.STATUS_ABORTED  # nobody cancelled the goal: it was stopped
    assert result.result().result.failure_stage == "cancelled"
    assert_stopped_and_stays(workcell, target)
    ((entry, _),) = logged(graph)
    assert entry["failure_stage"] == "cancelled"


def publish_instruction(graph, instruction: str) -> None:
    pub = graph["client"].create_publisher(String, topics.INSTRUCTION, 10)
    assert spin_until(graph["executor"], lambda: pub.get_subscription_count() > 0, 5.0)
    pub.publish(String(data=instruction))


def test_stop_service_halts_an_auto_execute_motion(graph, workcell, monkeypatch):
    """An instruction from the topic has no goal to cancel: vla_r1/stop is how its motion is stopped."""
    graph["planning"].set_parameters([Parameter("auto_execute", value=True)])
    target, instruction = instruction_for(workcell, seed=6)
    before = workcell.joint_positions()
    hold_the_motion_once_it_moves(monkeypatch, workcell, before)
    publish_instruction(graph, instruction)
    wait_until_the_arm_moves(graph, workcell, before)
    assert call_stop(graph).success
    ((entry, _),) = logged(graph, timeout_s=30.0)
    assert entry["failure_stage"] == "cancelled" and not entry["success"]
    assert_stopped_and_stays(workcell, target)
    # Once the stopped run has handed its record over, nothing runs any more.
    idle = "nothing was running; the arm is halted"
    assert spin_until(graph["executor"], lambda: call_stop(graph).message == idle, 5.0)


def test_a_topic_instruction_is_planned_as_a_dry_run_and_never_moves(graph, workcell):
    _, instruction = instruction_for(workcell, seed=5)
    before = workcell.joint_positions()
    publish_instruction(graph, instruction)
    ((entry, document),) = logged(graph)
    assert entry["failure_stage"] == "dry_run" and document["plan"]["feasible"]
    assert graph["received"]["plans"] and graph["received"]["plans"][0].feasible
    np.testing.assert_allclose(workcell.joint_positions(), before, atol=1e-3)  # auto_execute is false


def test_a_model_thinking_for_seconds_still_acts_on_the_trial_frame(graph, workcell):
    """A reasoning model takes seconds; the trial keeps its frame set, so the answer is lifted with the
    very depth of the image the model saw, however long it thought."""
    graph["model"].think_s = 1.5
    target, instruction = instruction_for(workcell, seed=2)
    result = run_goal(graph, instruction)
    assert result.success, f"{result.failure_stage}: {result.message}"
    assert workcell.object_in_tray(target.name)


def test_no_frame_set_fails_the_trial_in_seconds_with_the_reason(graph, workcell):
    _, instruction = instruction_for(workcell, seed=1)
    graph["camera"].stop_camera()
    started = time.monotonic()
    result = run_goal(graph, instruction)
    assert result.failure_stage == "timeout" and "no complete frame set" in result.message
    assert time.monotonic() - started < 10.0
    ((entry, document),) = logged(graph)
    assert entry["failure_stage"] == "timeout" and document["files"] == {"color": None, "depth": None}


def status_says(graph, condition, timeout_s: float = 10.0) -> dict:
    """The newest planning/status, once it meets `condition`."""
    statuses = graph["received"]["status"]
    assert spin_until(graph["executor"], lambda: statuses and condition(statuses[-1]), timeout_s), statuses[-1:]
    return statuses[-1]


def test_trials_wait_for_the_logger_and_a_refused_record_is_delivered_later(graph, workcell, monkeypatch):
    """...and planning/status says why, as `vla-r1 trials` reads it to pause and tell the operator."""
    executor, logger = graph["executor"], graph["logger"]
    # Goals are refused until the logger is discovered, then taken.
    assert status_says(graph, lambda s: not s["refusal"]) == IDLE_STATUS
    real_write = logger.store.write

    def disk_full(*args, **kwargs):
        raise EpisodeStoreError("cannot write: disk full")

    monkeypatch.setattr(logger.store, "write", disk_full)
    _, instruction = instruction_for(workcell, seed=1)
    result = run_goal(graph, instruction)
    assert result.success and "not logged yet" in result.message and "disk full" in result.message
    assert episodes.read_index(graph["log_dir"]) == []
    assert graph["planning"].delivery.outbox.pending_keys() == [result.episode_id]
    # max_undelivered (1 here) records wait: no new trial, and the reason names the cause.
    assert not send_goal(graph, instruction).accepted
    assert re.search(
        r"1 finished trials wait to be logged, the oldest for \d+ s \(.*disk full",
        graph["planning"].delivery.refusal_reason(),
    )
    status = status_says(graph, lambda s: s["undelivered"] == 1)
    assert "disk full" in status["log_error"] and "wait to be logged" in status["refusal"]
    monkeypatch.setattr(logger.store, "write", real_write)  # room again: the retry timer delivers it
    ((entry, document),) = logged(graph)
    assert entry["trial_id"] == result.episode_id and document["files"]["color"] == "color.png"
    assert spin_until(executor, lambda: not graph["planning"].delivery.outbox.pending_keys(), 5.0)
    assert status_says(graph, lambda s: s["undelivered"] == 0) == IDLE_STATUS

    # No logger listening: no trial starts (its record would have nowhere to go).
    executor.remove_node(logger)
    logger.destroy_node()
    assert spin_until(executor, lambda: not graph["planning"].delivery.log_client.service_is_ready(), 10.0)
    assert not send_goal(graph, instruction).accepted
    assert "no reward logger" in status_says(graph, lambda s: s["refusal"])["refusal"]
    start_logger(executor, graph["log_dir"])
    assert spin_until(executor, graph["planning"].delivery.log_client.service_is_ready, 30.0)
    assert run_goal(graph, instruction, plan_only=True).failure_stage == "dry_run"
    assert len(logged(graph, 2)) == 2


@pytest.fixture
def moveit_graph(executor, workcell, tmp_path, monkeypatch):
    """The graph with the planning node on the MoveIt executor, as `executor:=moveit` builds it
    (`executors.make_executor`: moveit_py.yaml's settings, the workcell's collision world), except that
    MoveIt itself is a TEST DOUBLE: moveit_py cannot be installed here. test/moveit_jazzy_double.py
    mirrors moveit_py's Jazzy API (the moveit2 files and commit are in its docstring) over PyBullet's
    Panda; only the MoveItPy construction (moveit_configs_utils, not doubled) is bypassed."""
    yield from moveit_planning_graph(executor, workcell, tmp_path, monkeypatch)


def moveit_planning_graph(executor, workcell, tmp_path, monkeypatch, overrides=()):
    import moveit_jazzy_double as double

    from vla_r1_ros.core.collision import CollisionWorld
    from vla_r1_ros.executors.moveit import MoveItExecutor

    moveit, world = double.install(monkeypatch)
    config = PackageConfig.load()
    settings = config.moveit_py["vla_r1"]
    arm = MoveItExecutor(moveit, settings, CollisionWorld.from_config(config.workcell, config.camera))
    ready = np.array([0, -0.785, 0, -2.356, 0, 1.571, 0.785])  # the Panda's ready configuration
    world.arm_q = arm.solve_ik(*workcell.ee_pose(), ready)
    assert world.arm_q is not None
    world.object_width_m = 0.04  # the hand closes on an object
    try:
        yield from (graph | {"world": world} for graph in planning_graph(executor, workcell, tmp_path, arm, overrides))
    finally:
        world.close()


def test_a_trial_through_moveit_inside_the_planning_node_is_executed_logged_and_not_judged(moveit_graph, workcell):
    """A lab's path end to end: frames -> prediction -> a plan collision-checked by MoveIt's planning
    scene -> executed through moveit_py -> not judged (MoveIt cannot see where the object went) ->
    logged. The simulated arm never moves: the trial ran on MoveIt's."""
    from vla_r1_ros.core.outcomes import is_judged

    _, instruction = instruction_for(workcell, seed=1)
    sim_arm_before = workcell.joint_positions()
    result = run_goal(moveit_graph, instruction)
    assert result.failure_stage == "" and result.message == "pick-and-place motion executed", result.message
    world = moveit_graph["world"]
    assert world.arm_trajectories >= 4 and world.is_state_colliding_calls > 0  # ran and was checked by MoveIt
    np.testing.assert_allclose(workcell.joint_positions(), sim_arm_before, atol=1e-6)
    ((entry, document),) = logged(moveit_graph)
    assert entry["trial_id"] == result.episode_id and document["plan"]["feasible"]
    assert entry["outcome_source"] == document["outcome"]["outcome_source"] == "none"
    assert not is_judged(entry["outcome_source"], entry["failure_stage"])  # no success until someone judges it
    # The path measured from joint states during the motions: more points than motions ran.
    assert len(document["executed_ee_path"]) > world.arm_trajectories


def test_a_self_reset_through_moveit_inside_the_planning_node_plans_from_depth_and_executes(
    executor, workcell, tmp_path, monkeypatch
):
    """`vla_r1/self_reset` served by the planning node on the MoveIt executor (the TEST DOUBLE of
    moveit_jazzy_double.py, as in `moveit_graph`): the objects the camera sees in the tray are moved
    through moveit_py, then a fresh frame set is checked. MoveIt's arm is not the simulator's, so
    nothing moved in the simulated scene and the layout rightly does not verify: the reset says so."""
    from vla_r1_interfaces.srv import SelfReset

    from vla_r1_ros.core.object_registry import register_objects
    from vla_r1_ros.core.scene import sim_marks
    from vla_r1_ros.core.self_reset import ResetSettings
    from vla_r1_ros.core.tray import TrayPose
    from vla_r1_ros.testing.arrange import arrange_outcome, view_of

    config = PackageConfig.load()
    settings = ResetSettings.from_config(config.workspace, config.camera, gripper_opening_m=0.08)
    workcell.reset(3)
    frame, scene = workcell.capture()
    expected = TrayPose(np.array(scene.tray.position), np.array(scene.tray.size))
    marks = sim_marks(scene, frame.intrinsics, camera_extrinsics(config.camera))
    register_objects(view_of(frame, config.camera), marks, expected, settings.segmentation).save(
        tmp_path / "objects.json"
    )
    arrange_outcome(workcell, np.random.default_rng(0), "two_in_tray")
    in_tray = workcell.objects_in_tray()
    assert len(in_tray) == 2
    overrides = [Parameter("object_registry", value=str(tmp_path / "objects.json"))]
    for graph in moveit_planning_graph(executor, workcell, tmp_path, monkeypatch, overrides):
        client = graph["client"].create_client(SelfReset, topics.SELF_RESET)
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(SelfReset.Request(seed=0))
        assert spin_until(executor, future.done, 120.0), "the self-reset did not answer"
        response = future.result()
        world = graph["world"]
        assert response.moved == 2 and world.arm_trajectories >= 8, response.message  # both, through moveit_py
        assert not response.success and "the layout does not verify: 2 object(s) in the tray" in response.message
        assert workcell.objects_in_tray() == in_tray


@pytest.fixture
def real_cell_graph(executor, workcell, tmp_path):
    """The graph as on a real cell (`scene:=false`: no simulator scene in the frame set, so the tray is
    measured from depth) with the simulated arm, its own object boxes off: depth is all it knows."""
    from vla_r1_ros.executors.sim import SimArmExecutor

    collision = workcell.config["collision"]
    collision["scene_objects"] = False
    try:
        yield from planning_graph(
            executor, workcell, tmp_path, SimArmExecutor(workcell), [Parameter("scene", value=False)]
        )
    finally:
        collision["scene_objects"] = True


def tray_moved_by(workcell, seed: int, offset_xy) -> tuple[str, np.ndarray]:
    """Reset to `seed`, the tray put `offset_xy` from where config/workcell.yaml expects it."""
    from vla_r1_ros.core.tray import TrayPose
    from vla_r1_ros.testing.arrange import move_tray

    _, instruction = instruction_for(workcell, seed)
    where = TrayPose.configured(load_config("workcell")).centre[:2] + np.asarray(offset_xy)
    move_tray(workcell, where)
    return instruction, where


def test_a_real_cells_tray_is_measured_and_used_and_clutter_only_depth_shows_refuses_the_plan(
    real_cell_graph, workcell
):
    from vla_r1_ros.testing.arrange import depth_only_box, remove_body

    planning = real_cell_graph["planning"]
    instruction, where = tray_moved_by(workcell, seed=0, offset_xy=[0.01, 0.0])
    result = run_goal(real_cell_graph, instruction, plan_only=True)
    assert result.failure_stage == "dry_run", result.message
    np.testing.assert_allclose(planning.measured_tray.centre[:2], where, atol=0.007)  # measured, not assumed
    plan = real_cell_graph["received"]["plans"][-1]
    grasp, place = plan.grasp_pose.position, plan.place_pose.position
    middle = np.array([grasp.x + place.x, grasp.y + place.y]) / 2
    uid = depth_only_box(workcell, np.array([*middle, 0.175]), np.array([0.06, 0.06, 0.35]))
    try:
        result = run_goal(real_cell_graph, instruction, plan_only=True)
    finally:
        remove_body(workcell, uid)
    assert result.failure_stage == "collision", result.message
    assert re.search(r"\d+ mm into depth_clutter_\d+", result.message), result.message


def test_a_real_cells_tray_far_from_the_config_refuses_trials_and_nothing_moves(real_cell_graph, workcell):
    instruction, _ = tray_moved_by(workcell, seed=0, offset_xy=[0.05, 0.0])
    before = workcell.joint_positions()
    result = run_goal(real_cell_graph, instruction)
    assert result.failure_stage == "safety", result.message
    assert re.search(r"tray measured from depth .* measured at .* \d+ mm and \d+ deg off", result.message), (
        result.message
    )
    assert real_cell_graph["planning"].measured_tray is None
    np.testing.assert_allclose(workcell.joint_positions(), before, atol=1e-3)
    ((entry, document),) = logged(real_cell_graph)  # the refusal is logged, with the frames it refused
    assert entry["trial_id"] == result.episode_id and entry["failure_stage"] == "safety"
    assert document["files"]["color"] and document["prediction"]
