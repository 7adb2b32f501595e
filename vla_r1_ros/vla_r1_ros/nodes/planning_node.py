"""`planning_node`: lift VLA-R1 predictions to 3-D, plan a safe pick-and-place, execute, report.

Serves `vla_r1/execute_instruction` (ExecuteInstruction): one trial = perceive -> predict (Predict
action on the inference node, reasoning relayed as feedback) -> lift (the depth frame with the
prediction's stamp) -> plan + safety checks -> execute; then publishes `vla_r1/episode`. The trial
logic is `core.trial_flow.TrialFlow`; this node only supplies its ROS-facing steps.

Also plans every prediction published on `vla_r1/prediction` outside a trial (e.g. from the
`vla_r1/instruction` topic) and publishes the plan; it executes such a plan only with
`auto_execute:=true`.

`vla_r1/stop` (std_srvs/Trigger) halts the arm and ends whatever is running as "cancelled": an action
trial (whose goal is then aborted) or an `auto_execute` execution, which has no goal to cancel.

Parameters: `executor` (sim | moveit), `max_frame_age_s`, `auto_execute`, `predict_timeout_s`.
Threads: a MultiThreadedExecutor and one ReentrantCallbackGroup, so the action callback can block on
the Predict action while that action's callbacks (and the depth subscription) keep running.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any

from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray
from vla_r1_interfaces.action import ExecuteInstruction, Predict
from vla_r1_interfaces.msg import EpisodeRecord, ManipulationPlan, VlaPrediction

from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.lifting import LiftedPrediction, LiftError, LiftParams, lift_prediction
from vla_r1_ros.core.planning import (
    PickPlacePlan,
    PlanningParams,
    SafetyLimits,
    ValidatedPlan,
    plan_pick_and_place,
)
from vla_r1_ros.core.trial_flow import Prediction, StageFailure, TrialFlow, TrialRecord, TrialSteps
from vla_r1_ros.executors import make_executor
from vla_r1_ros.executors.base import ArmExecutor, validate_for
from vla_r1_ros.nodes.conversions import (
    image_to_numpy,
    intrinsics_from_camera_info,
    nearest_by_stamp,
    ns_to_stamp,
    point_msg,
    stamp_to_ns,
)
from vla_r1_ros.nodes.plan_msgs import plan_markers, plan_msg
from vla_r1_ros.nodes.prediction_msgs import prediction_from_msg
from vla_r1_ros.nodes.spin import spin_nodes
from vla_r1_ros.sim.shared import shared_workcell

DEPTH_BUFFER = 30  # ~1 s of depth at 30 Hz: a prediction's frame is found even if inference was quick
DEPTH_MATCH_TOLERANCE_NS = 1_000_000  # depth and colour of one aligned frame carry the same stamp
DEPTH_MATCH_WAIT_S = 0.5  # the frame may still be in flight when the prediction arrives
FRESH_FRAME_WAIT_S = 2.0  # perceive: how long to wait for a first / fresh depth frame
HANDLED_STAMPS = 32  # predictions a trial already acted on (their topic copy is ignored)


def to_prediction(msg: VlaPrediction) -> Prediction:
    data = prediction_from_msg(msg)
    return Prediction(
        stamp_ns=data.stamp_ns,
        valid=data.valid,
        error=data.error,
        box_px=None if data.box_px is None else tuple(float(v) for v in data.box_px),
        waypoints_px=data.waypoints_px,
        source=msg,
    )


class PlanningNode(Node):
    def __init__(self, arm: ArmExecutor | None = None, **kwargs: Any):
        """`arm`: an executor to use instead of the `executor` parameter's (tests share a workcell)."""
        super().__init__("planning", **kwargs)
        self.declare_parameter("executor", "sim")
        self.declare_parameter("max_frame_age_s", 2.0)
        self.declare_parameter("auto_execute", False)
        self.declare_parameter("predict_timeout_s", 120.0)

        camera, workspace = load_config("camera"), load_config("workspace")
        self.base_frame = str(camera["frames"]["base"])
        self.camera_frame = str(camera["frames"]["camera_optical"])
        self.base_T_camera = camera_extrinsics(camera)
        self.lift_params = LiftParams.from_config(workspace, camera)
        self.planning_params = PlanningParams.from_config(workspace)
        self.limits = SafetyLimits.from_config(workspace)
        self.arm = arm if arm is not None else make_executor(self.get_parameter("executor").value, shared_workcell)

        self._group = ReentrantCallbackGroup()
        self._frames = threading.Condition()
        self._depth: deque[Image] = deque(maxlen=DEPTH_BUFFER)
        # The first frames after a trial's instruction, kept until the trial ends: the model may think
        # for longer than the rolling buffer lasts, and the frame it answers on is one of these.
        self._trial_depth: list[Image] = []
        self._trial_not_before_ns: int | None = None
        self._camera_info: CameraInfo | None = None
        self._busy = threading.Lock()  # one trial (one arm) at a time
        self._stop_requested = threading.Event()  # vla_r1/stop: cleared when the next trial starts
        self._handled: deque[int] = deque(maxlen=HANDLED_STAMPS)

        # Reliable: the depth frame of the prediction's image must arrive whole (best effort loses about
        # half of the 600 kB depth frames across processes; see docs/perception.md).
        frames_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(
            Image, "camera/aligned_depth_to_color/image_raw", self._on_depth, frames_qos, callback_group=self._group
        )
        self.create_subscription(
            CameraInfo, "camera/color/camera_info", self._on_camera_info, frames_qos, callback_group=self._group
        )
        self.create_subscription(
            VlaPrediction, "vla_r1/prediction", self._on_prediction, 10, callback_group=self._group
        )
        self.plan_pub = self.create_publisher(ManipulationPlan, "vla_r1/plan", 10)
        self.marker_pub = self.create_publisher(MarkerArray, "vla_r1/plan_markers", 10)
        self.episode_pub = self.create_publisher(EpisodeRecord, "vla_r1/episode", 10)
        self.predict_client = ActionClient(self, Predict, "vla_r1/predict", callback_group=self._group)
        self.server = ActionServer(
            self,
            ExecuteInstruction,
            "vla_r1/execute_instruction",
            execute_callback=self._execute_trial,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=self._group,
        )
        self.create_service(Trigger, "vla_r1/stop", self._on_stop, callback_group=self._group)
        self.get_logger().info(f"planning node ready (executor: {self.arm.name})")

    # --- camera -----------------------------------------------------------------------------------

    def _on_depth(self, msg: Image) -> None:
        with self._frames:
            self._depth.append(msg)
            after_instruction = (
                self._trial_not_before_ns is not None and stamp_to_ns(msg.header.stamp) >= self._trial_not_before_ns
            )
            if after_instruction and len(self._trial_depth) < DEPTH_BUFFER:
                self._trial_depth.append(msg)
            self._frames.notify_all()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._frames:
            self._camera_info = msg

    def _age_s(self, stamp_ns: int) -> float:
        return (self.get_clock().now().nanoseconds - stamp_ns) / 1e9

    def _perceive(self, not_before_ns: int) -> None:
        """Wait for a frame captured after the instruction arrived: the world may have changed (a reset,
        a person) since the last one, and a trial must act on the scene as it is now."""

        def fresh() -> bool:
            return (
                bool(self._depth)
                and self._camera_info is not None
                and stamp_to_ns(self._depth[-1].header.stamp) >= not_before_ns
            )

        with self._frames:
            if not self._frames.wait_for(fresh, timeout=FRESH_FRAME_WAIT_S):
                raise StageFailure(
                    "timeout",
                    f"no depth frame + camera info captured after the instruction within {FRESH_FRAME_WAIT_S} s "
                    "on camera/aligned_depth_to_color/image_raw and camera/color/camera_info",
                )

    def _matching_depth(
        self, stamp_ns: int, not_before_ns: int | None, thinking_s: float = 0.0
    ) -> tuple[Image, CameraInfo]:
        """The depth frame of the prediction's image. In a trial (`not_before_ns`: when the instruction
        arrived) the image must have been captured after the instruction, however long the model then
        thought; a prediction from the topic, outside a trial, must have been younger than max_frame_age_s
        when the model answered (`thinking_s`: the model's own time on it)."""

        def match() -> Image | None:
            return nearest_by_stamp([*self._trial_depth, *self._depth], stamp_ns, DEPTH_MATCH_TOLERANCE_NS)

        if not_before_ns is not None:
            if stamp_ns < not_before_ns:
                raise LiftError("stale", "the prediction answers a frame captured before the instruction")
        else:
            max_age = float(self.get_parameter("max_frame_age_s").value)
            age = self._age_s(stamp_ns) - thinking_s  # how old the frame was when the answer came
            if age > max_age:
                raise LiftError("stale", f"the prediction's image is {age:.1f} s old (max_frame_age_s {max_age})")
        with self._frames:
            found = self._frames.wait_for(match, timeout=DEPTH_MATCH_WAIT_S)
            if found is None or self._camera_info is None:
                held = [stamp_to_ns(m.header.stamp) for m in self._depth]
                span = f"{min(held)}..{max(held)} ns" if held else "nothing"
                raise LiftError("stale", f"no depth frame with the prediction's stamp {stamp_ns} ns (buffer: {span})")
            return found, self._camera_info

    # --- trial steps --------------------------------------------------------------------------------

    def _lift(self, prediction: Prediction, not_before_ns: int | None = None) -> LiftedPrediction:
        thinking_s = float(getattr(prediction.source, "inference_latency_s", 0.0))
        depth_msg, info = self._matching_depth(prediction.stamp_ns, not_before_ns, thinking_s)
        if depth_msg.header.frame_id and depth_msg.header.frame_id != self.camera_frame:
            raise LiftError(
                "bad_input",
                f"depth is in {depth_msg.header.frame_id!r} but the extrinsics are for {self.camera_frame!r}",
            )
        lifted = lift_prediction(
            image_to_numpy(depth_msg),
            intrinsics_from_camera_info(info),
            prediction.box_px,
            prediction.waypoints_px,
            self.lift_params,
            frame_id=self.camera_frame,
        )
        return lifted.transformed(self.base_T_camera, self.base_frame)

    def _plan(self, lifted: LiftedPrediction) -> PickPlacePlan:
        return plan_pick_and_place(lifted.grasp, lifted.surface_waypoints, self.planning_params)

    def _validate(self, plan: PickPlacePlan) -> ValidatedPlan:
        return validate_for(self.arm, plan, self.limits)

    def _predict(self, instruction: str, tasks: list[str], goal_handle: Any, not_before_ns: int) -> Prediction:
        timeout = float(self.get_parameter("predict_timeout_s").value)
        if not self.predict_client.wait_for_server(timeout_sec=min(5.0, timeout)):
            raise StageFailure("timeout", "no Predict action server on vla_r1/predict (is the inference node up?)")
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def on_feedback(feedback_msg: Any) -> None:
            fb = feedback_msg.feedback
            goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage="predict", reasoning_chunk=fb.text))

        def on_result(future: Any) -> None:
            outcome["result"] = future.result()
            done.set()

        def on_goal_response(future: Any) -> None:
            handle = future.result()
            outcome["handle"] = handle
            if not handle.accepted:
                done.set()
                return
            handle.get_result_async().add_done_callback(on_result)

        goal = Predict.Goal(instruction=instruction, tasks=list(tasks), not_before=ns_to_stamp(not_before_ns))
        self.predict_client.send_goal_async(goal, feedback_callback=on_feedback).add_done_callback(on_goal_response)
        deadline = self.get_clock().now().nanoseconds + int(timeout * 1e9)
        while not done.wait(0.05):
            cancelled = goal_handle.is_cancel_requested
            if cancelled or self.get_clock().now().nanoseconds > deadline:
                if "handle" in outcome:
                    outcome["handle"].cancel_goal_async()
                if cancelled:
                    raise StageFailure("cancelled", "cancelled while the model was predicting")
                raise StageFailure("timeout", f"the Predict action did not answer within {timeout} s")
        if "result" not in outcome:
            raise StageFailure("timeout", "the inference node rejected the Predict goal (busy or not ready)")
        return to_prediction(outcome["result"].result.prediction)

    # --- publishing --------------------------------------------------------------------------------

    def _plan_message(self, record: TrialRecord) -> ManipulationPlan:
        stamp = ns_to_stamp(record.prediction.stamp_ns) if record.prediction else self.get_clock().now().to_msg()
        if record.lift_error is not None:
            check = "stale" if record.lift_error.kind == "stale" else "lift"
            reason = str(record.lift_error)
        elif record.rejection is not None:
            check, reason = record.rejection.check, record.rejection.reason
        else:
            check, reason = "", ""
        return plan_msg(
            record.plan,
            trial_id=record.trial_id,
            stamp=stamp,
            frame_id=self.base_frame,
            validated=record.validated,
            failed_check=check,
            reason=reason,
        )

    def _publish_plan(self, record: TrialRecord) -> None:
        msg = self._plan_message(record)
        self.plan_pub.publish(msg)
        self.marker_pub.publish(
            plan_markers(
                record.plan, self.limits, frame_id=self.base_frame, stamp=msg.header.stamp, feasible=msg.feasible
            )
        )
        if not msg.feasible:
            self.get_logger().warning(f"trial {record.trial_id}: plan rejected ({msg.failed_check}): {msg.reason}")

    def _publish_episode(self, record: TrialRecord) -> None:
        msg = EpisodeRecord()
        prediction = record.prediction
        msg.header.stamp = ns_to_stamp(prediction.stamp_ns) if prediction else self.get_clock().now().to_msg()
        msg.header.frame_id = self.base_frame
        msg.trial_id = record.trial_id
        msg.instruction = record.instruction
        if prediction is not None and prediction.source is not None:
            msg.prediction = prediction.source
        msg.plan = self._plan_message(record)
        msg.executed_ee_path = [point_msg(p) for p in record.ee_path]
        msg.success = record.success
        msg.failure_stage = record.failure_stage
        msg.message = record.message
        msg.stage_names = list(record.stage_names)
        msg.stage_seconds = [float(s) for s in record.stage_seconds]
        self.episode_pub.publish(msg)

    # --- the action ------------------------------------------------------------------------------

    def _on_goal(self, goal_request: Any) -> GoalResponse:
        # Taken here, released when the trial ends: a second goal arriving before the first one's
        # execute callback starts is rejected too.
        if not self._busy.acquire(blocking=False):
            self.get_logger().warning("rejecting ExecuteInstruction: a trial is already running")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._stop_requested.set()
        self.arm.stop()
        running = self._busy.locked()
        self.get_logger().warning(f"stop requested ({'a trial was running' if running else 'nothing was running'})")
        response.success = True  # the arm is halted either way
        response.message = "stopped the running trial" if running else "nothing was running; the arm is halted"
        return response

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        self.arm.stop()  # halts a motion in progress now; the trial then ends as "cancelled"
        return CancelResponse.ACCEPT

    def _execute_trial(self, goal_handle: Any) -> ExecuteInstruction.Result:
        goal = goal_handle.request
        tasks = list(goal.tasks) or ["affordance", "trajectory"]
        requested_ns = self.get_clock().now().nanoseconds
        self._stop_requested.clear()  # a stop applies to what was running when it came
        with self._frames:
            self._trial_not_before_ns, self._trial_depth = requested_ns, []
        try:  # self._busy was taken when the goal was accepted
            flow = TrialFlow(
                TrialSteps(
                    perceive=lambda: self._perceive(requested_ns),
                    predict=lambda instruction, t: self._predict(instruction, t, goal_handle, requested_ns),
                    lift=lambda prediction: self._lift(prediction, requested_ns),
                    plan=self._plan,
                    validate=self._validate,
                    execute=self.arm.execute,
                ),
                on_stage=lambda stage: goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage=stage)),
                on_plan=self._publish_plan,
            )
            record = flow.run(
                goal.instruction,
                tasks,
                plan_only=goal.plan_only,
                should_stop=lambda: goal_handle.is_cancel_requested or self._stop_requested.is_set(),
            )
            if record.prediction is not None:
                self._handled.append(record.prediction.stamp_ns)
        finally:
            with self._frames:
                self._trial_not_before_ns, self._trial_depth = None, []
            self._busy.release()
        self._publish_episode(record)
        goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage="done"))
        self.get_logger().info(
            f"trial {record.trial_id}: {'success' if record.success else record.failure_stage} — {record.message}"
        )
        if record.failure_stage == "cancelled" and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif record.failure_stage == "cancelled":  # stopped through vla_r1/stop, not by its client
            goal_handle.abort()
        else:  # a cancel that came after the trial finished does not undo what it did
            goal_handle.succeed()
        return ExecuteInstruction.Result(
            success=record.success,
            message=record.message,
            episode_id=record.trial_id,
            failure_stage=record.failure_stage,
        )

    # --- predictions outside a trial --------------------------------------------------------------

    def _on_prediction(self, msg: VlaPrediction) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        # A trial's own prediction also arrives here: the trial already handles it.
        if stamp_ns in self._handled or not self._busy.acquire(blocking=False):
            return
        try:
            self._stop_requested.clear()
            execute = bool(self.get_parameter("auto_execute").value)
            flow = TrialFlow(
                TrialSteps(
                    perceive=lambda: None,
                    predict=lambda instruction, tasks: to_prediction(msg),
                    lift=self._lift,
                    plan=self._plan,
                    validate=self._validate,
                    execute=self.arm.execute,
                ),
                on_plan=self._publish_plan,
            )
            record = flow.run(
                msg.instruction, list(msg.tasks), plan_only=not execute, should_stop=self._stop_requested.is_set
            )
            self._handled.append(stamp_ns)
        finally:
            self._busy.release()
        if execute and record.stage_names[-1:] == ["execute"]:
            self._publish_episode(record)

    def destroy_node(self) -> None:
        self.arm.stop()  # a node going away must not leave the arm moving
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    sys.exit(spin_nodes(lambda: [PlanningNode()], args))


if __name__ == "__main__":
    main()
