"""The planning node with real rclpy: ExecuteInstruction goals end with the object in the tray and an
EpisodeRecord; a plan outside the workspace is rejected and nothing moves; plan_only never moves.

The planning node is real and drives the simulated Panda (SimArmExecutor on a PyBullet workcell). The
camera and the model are NOT the real perception and inference nodes: a minimal test node publishes
the workcell's depth + camera info and serves `vla_r1/predict` by answering from the simulator's ground
truth (the reference box and waypoints of the object the instruction names, written in the model's
text format and parsed back). The inference node's scripted policy needs the perception node's sim
source and the workcell/scene topic, which this test keeps out of scope.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.action import ActionClient, ActionServer
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from vla_r1_interfaces.action import ExecuteInstruction, Predict
from vla_r1_interfaces.msg import EpisodeRecord, ManipulationPlan, VlaPrediction

from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.parsing import parse_answer
from vla_r1_ros.core.prompts import format_answer
from vla_r1_ros.core.scene import reference_box, reference_waypoints, resolve_target
from vla_r1_ros.nodes.conversions import camera_info_msg, ns_to_stamp, numpy_to_image
from vla_r1_ros.nodes.perception_node import FRAME_QOS  # what the camera publishes with
from vla_r1_ros.nodes.prediction_msgs import prediction_msg
from vla_r1_ros.testing.ros import spin_until

CAMERA = load_config("camera")
BASE_T_CAMERA = camera_extrinsics(CAMERA)
OPTICAL = CAMERA["frames"]["camera_optical"]


class GroundTruthCameraAndModel(Node):
    """Test stand-in for perception + inference: depth/camera info at 5 Hz from the workcell, and a
    Predict server answering from ground truth. `place_override` replaces the last waypoint (base frame)."""

    def __init__(self, workcell):
        super().__init__("ground_truth_camera_and_model")
        self.workcell = workcell
        self.place_override: np.ndarray | None = None
        self.think_s = 0.0  # how long the stand-in model "thinks" after taking its frame
        self._latest = None
        self._lock = threading.Lock()
        # Stopping by a flag, not by cancelling the timer: rclpy's MultiThreadedExecutor calls a ready
        # timer in a worker thread, and a timer cancelled in between raises RCLError at the next spin.
        self._capturing = threading.Lock()
        self._stopped = False
        group = ReentrantCallbackGroup()
        self.depth_pub = self.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", FRAME_QOS)
        self.info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", FRAME_QOS)
        self.prediction_pub = self.create_publisher(VlaPrediction, "vla_r1/prediction", 10)
        self.create_timer(0.2, self.publish_frame, callback_group=group)
        self.server = ActionServer(self, Predict, "vla_r1/predict", self.predict, callback_group=group)

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
        with self._lock:
            self._latest = (frame, scene)
        self.depth_pub.publish(numpy_to_image(frame.depth_mm, "16UC1", stamp, OPTICAL))
        self.info_pub.publish(camera_info_msg(frame.intrinsics, stamp, OPTICAL))

    def answer(self, instruction: str, on_text=lambda task, text: None) -> VlaPrediction:
        """The prediction for the newest frame, as the inference node would publish it."""
        with self._lock:
            frame, scene = self._latest
        k = frame.intrinsics
        target = resolve_target(instruction, scene.objects)
        path = reference_waypoints(scene, target, k, BASE_T_CAMERA)
        if self.place_override is not None:
            path[-1] = k.project(BASE_T_CAMERA.inverse().apply(self.place_override)) / [k.width, k.height]
        texts = [
            format_answer(f"the {target.name} is in the box", reference_box(target, k)),
            format_answer("from the object to the tray", [tuple(p) for p in path]),
        ]
        tasks = ["affordance", "trajectory"]
        for task, text in zip(tasks, texts, strict=True):
            on_text(task, text)
        msg = prediction_msg(
            stamp=ns_to_stamp(frame.stamp_ns),
            frame_id=OPTICAL,
            instruction=instruction,
            model_id="test:ground-truth",
            image_size=(k.width, k.height),
            tasks=tasks,
            raw_texts=texts,
            parsed=[parse_answer(t, task) for t, task in zip(texts, tasks, strict=True)],
        )
        self.prediction_pub.publish(msg)  # as the inference node does: the planning node must not act twice
        return msg

    def predict(self, goal_handle) -> Predict.Result:
        def feedback(task: str, text: str) -> None:
            goal_handle.publish_feedback(Predict.Feedback(task=task, text=text))

        msg = self.answer(goal_handle.request.instruction, feedback)
        time.sleep(self.think_s)
        goal_handle.succeed()
        return Predict.Result(prediction=msg)


@pytest.fixture(scope="module")
def workcell():
    from vla_r1_ros.sim.workcell import Workcell

    cell = Workcell()
    yield cell
    cell.close()


@pytest.fixture
def graph(executor, workcell):
    from vla_r1_ros.executors.sim import SimArmExecutor
    from vla_r1_ros.nodes.planning_node import PlanningNode

    planning = PlanningNode(arm=SimArmExecutor(workcell))
    fake = GroundTruthCameraAndModel(workcell)
    client = Node("trial_client")
    received = {"plans": [], "episodes": [], "feedback": []}
    client.create_subscription(ManipulationPlan, "vla_r1/plan", received["plans"].append, 10)
    client.create_subscription(EpisodeRecord, "vla_r1/episode", received["episodes"].append, 10)
    action = ActionClient(client, ExecuteInstruction, "vla_r1/execute_instruction")
    for node in (planning, fake, client):
        executor.add_node(node)
    assert spin_until(executor, lambda: action.server_is_ready(), 10.0)
    yield executor, action, fake, received
    fake.stop_camera()  # the module's workcell outlives these nodes: no capture may be in flight


def run_goal(graph, instruction: str, plan_only: bool = False, timeout_s: float = 60.0):
    executor, action, _, received = graph
    goal = ExecuteInstruction.Goal(instruction=instruction, plan_only=plan_only)
    sent = action.send_goal_async(goal, feedback_callback=lambda fb: received["feedback"].append(fb.feedback))
    assert spin_until(executor, sent.done, 10.0) and sent.result().accepted
    result = sent.result().get_result_async()
    assert spin_until(executor, result.done, timeout_s), "the trial did not finish"
    assert spin_until(executor, lambda: len(received["episodes"]) >= 1, 5.0), "no EpisodeRecord"
    return result.result().result


def instruction_for(workcell, seed: int, pick: int = 0):
    workcell.reset(seed)
    target = [o for o in workcell.scene().objects if o.visible][pick]
    return target, f"put the {target.colour} {target.shape} in the tray"


def test_execute_instruction_puts_the_object_in_the_tray(graph, workcell):
    target, instruction = instruction_for(workcell, seed=1)
    result = run_goal(graph, instruction)
    assert result.success, f"{result.failure_stage}: {result.message}"
    assert result.failure_stage == "" and result.episode_id
    assert workcell.object_in_tray(target.name)

    _, _, _, received = graph
    (episode,) = received["episodes"]
    assert episode.trial_id == result.episode_id and episode.success and episode.instruction == instruction
    assert list(episode.stage_names) == ["perceive", "predict", "lift", "plan", "execute"]
    assert len(episode.stage_seconds) == 5 and len(episode.executed_ee_path) > 10
    assert episode.plan.feasible and episode.prediction.valid
    stages = [fb.stage for fb in received["feedback"]]
    assert stages[0] == "perceive" and stages[-1] == "done" and "execute" in stages
    assert any(fb.reasoning_chunk.startswith("<think>") for fb in received["feedback"])
    # One plan published: the prediction's topic copy was recognised as the trial's own.
    spin_until(graph[0], lambda: False, 0.5)
    assert [p.trial_id for p in received["plans"]] == [result.episode_id]


def test_plan_outside_the_workspace_is_rejected_and_nothing_moves(graph, workcell):
    _, instruction = instruction_for(workcell, seed=2)
    graph[2].place_override = np.array([0.08, 0.2, 0.0])  # behind the workspace's x_min
    before = workcell.joint_positions()
    result = run_goal(graph, instruction)
    assert not result.success and result.failure_stage == "safety"
    assert "workspace" in result.message
    np.testing.assert_allclose(workcell.joint_positions(), before, atol=1e-3)

    _, _, _, received = graph
    plan = received["plans"][-1]
    assert not plan.feasible and plan.failed_check == "workspace" and plan.reason
    assert received["episodes"][0].failure_stage == "safety"
    assert len(received["episodes"][0].executed_ee_path) == 0


def test_plan_only_plans_and_never_moves(graph, workcell):
    _, instruction = instruction_for(workcell, seed=3)
    before = workcell.joint_positions()
    result = run_goal(graph, instruction, plan_only=True)
    assert not result.success and result.failure_stage == "dry_run" and "plan only" in result.message
    np.testing.assert_allclose(workcell.joint_positions(), before, atol=1e-3)
    plan = graph[3]["plans"][-1]
    assert plan.feasible and len(plan.joint_trajectory.points) > 10


def test_cancel_during_execution_stops_the_arm(graph, workcell):
    from action_msgs.msg import GoalStatus

    executor, action, _, received = graph
    target, instruction = instruction_for(workcell, seed=4)
    sent = action.send_goal_async(
        ExecuteInstruction.Goal(instruction=instruction),
        feedback_callback=lambda fb: received["feedback"].append(fb.feedback),
    )
    assert spin_until(executor, sent.done, 10.0) and sent.result().accepted
    handle = sent.result()
    assert spin_until(executor, lambda: any(fb.stage == "execute" for fb in received["feedback"]), 30.0)
    handle.cancel_goal_async()
    result = handle.get_result_async()
    assert spin_until(executor, result.done, 30.0)
    assert result.result().status == GoalStatus.STATUS_CANCELED
    assert result.result().result.failure_stage == "cancelled"
    assert not workcell.object_in_tray(target.name)
    held = workcell.joint_positions()
    workcell.step(0.5)
    np.testing.assert_allclose(workcell.joint_positions(), held, atol=0.01)  # stopped, and stays stopped
    assert spin_until(executor, lambda: len(received["episodes"]) >= 1, 5.0)
    assert received["episodes"][0].failure_stage == "cancelled"


def call_stop(graph) -> Trigger.Response:
    executor, _, fake, _ = graph
    client = fake.create_client(Trigger, "vla_r1/stop")
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(Trigger.Request())
    assert spin_until(executor, future.done, 10.0)
    return future.result()


def wait_until_the_arm_moves(graph, workcell, before: np.ndarray) -> None:
    assert spin_until(graph[0], lambda: np.max(np.abs(workcell.joint_positions() - before)) > 0.05, 30.0)


def assert_stopped_and_stays(workcell, target) -> None:
    assert not workcell.object_in_tray(target.name)
    held = workcell.joint_positions()
    workcell.step(0.5)
    np.testing.assert_allclose(workcell.joint_positions(), held, atol=0.01)


def test_stop_service_halts_an_action_trial_and_aborts_its_goal(graph, workcell):
    from action_msgs.msg import GoalStatus

    executor, action, _, received = graph
    target, instruction = instruction_for(workcell, seed=4)
    before = workcell.joint_positions()
    sent = action.send_goal_async(ExecuteInstruction.Goal(instruction=instruction))
    assert spin_until(executor, sent.done, 10.0) and sent.result().accepted
    wait_until_the_arm_moves(graph, workcell, before)
    response = call_stop(graph)
    assert response.success and response.message == "stopped the running trial"
    result = sent.result().get_result_async()
    assert spin_until(executor, result.done, 30.0)
    assert result.result().status == GoalStatus.STATUS_ABORTED  # nobody cancelled the goal: it was stopped
    assert result.result().result.failure_stage == "cancelled"
    assert_stopped_and_stays(workcell, target)
    assert spin_until(executor, lambda: len(received["episodes"]) >= 1, 5.0)
    assert received["episodes"][0].failure_stage == "cancelled"


def test_stop_service_halts_an_auto_execute_motion(graph, workcell):
    """A prediction from the topic has no goal to cancel: vla_r1/stop is how its motion is stopped."""
    executor, _, fake, received = graph
    (planning,) = [node for node in executor.get_nodes() if node.get_name() == "planning"]
    planning.set_parameters([Parameter("auto_execute", value=True)])
    target, instruction = instruction_for(workcell, seed=6)
    assert spin_until(executor, lambda: fake._latest is not None and fake._latest[0].stamp_ns > 0, 5.0)
    before = workcell.joint_positions()
    fake.answer(instruction)
    wait_until_the_arm_moves(graph, workcell, before)
    assert call_stop(graph).success
    assert spin_until(executor, lambda: len(received["episodes"]) >= 1, 30.0)
    (episode,) = received["episodes"]
    assert episode.failure_stage == "cancelled" and not episode.success
    assert_stopped_and_stays(workcell, target)
    assert call_stop(graph).message == "nothing was running; the arm is halted"


def test_a_prediction_outside_a_trial_is_planned_but_not_executed(graph, workcell):
    executor, _, fake, received = graph
    _, instruction = instruction_for(workcell, seed=5)
    assert spin_until(executor, lambda: fake._latest is not None and fake._latest[0].stamp_ns > 0, 5.0)
    before = workcell.joint_positions()
    fake.answer(instruction)  # e.g. what the inference node answers to the vla_r1/instruction topic
    assert spin_until(executor, lambda: len(received["plans"]) >= 1, 10.0)
    assert received["plans"][0].feasible
    spin_until(executor, lambda: False, 0.5)
    np.testing.assert_allclose(workcell.joint_positions(), before, atol=1e-3)  # auto_execute is false
    assert not received["episodes"]


def test_a_model_thinking_longer_than_the_frame_age_limit_still_acts(graph, workcell):
    """A reasoning model takes seconds; the frame it answers on was captured after the instruction, so
    the trial acts on it however old it is by then (max_frame_age_s guards predictions outside trials)."""
    executor, _, fake, _ = graph
    (planning,) = [node for node in executor.get_nodes() if node.get_name() == "planning"]
    planning.set_parameters([Parameter("max_frame_age_s", value=0.3)])
    fake.think_s = 1.0
    target, instruction = instruction_for(workcell, seed=2)
    result = run_goal(graph, instruction)
    assert result.success, f"{result.failure_stage}: {result.message}"
    assert workcell.object_in_tray(target.name)
