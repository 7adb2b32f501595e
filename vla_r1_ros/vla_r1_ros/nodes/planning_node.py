"""`planning_node`: owns each trial from the instruction to its logged record.

Serves `vla_r1/execute_instruction` (ExecuteInstruction). One trial (`core.trial_flow.TrialFlow`):
- perceive: the first complete frame set — colour, aligned depth, camera info and, from the simulator,
  its scene — captured after the goal arrived, matched once by the approximate-time rule
  (`core.frame_sync`), and kept for the whole trial;
- predict: the Predict action on the inference node, the goal carrying that very image (and scene);
  the answer's raw texts are re-parsed here with the parser's contract (nothing on the wire is trusted);
- lift (the same frame set's depth), plan + safety checks (nothing moves on a failed check), execute;
- one EpisodeRecord with everything, delivered to the reward logger at least once through the
  `vla_r1/log_episode` service (`core.delivery.Outbox`: kept until the logger confirms it is on disk,
  retried every `log_retry_period_s`). Goals are refused while no logger listens or while
  `max_undelivered` records wait. `planning/status` (JSON, latched; checked every `log_retry_period_s`
  and after each trial or refusal, published when it changes) says why goals are refused and what
  keeps records from the log, so that a run of trials can pause and tell its operator the cause
  (`core.run_holds`).

An instruction on `vla_r1/instruction` (std_msgs/String) runs the same flow as a dry run (executed only
with `auto_execute:=true`) when nothing else runs; an action goal preempts such a run, so a flood of
topic instructions never blocks goals. `vla_r1/stop` (std_srvs/Trigger) halts the arm and ends whatever
is running as "cancelled".

A replayed recording's frames carry their playback stamps (so "captured after the goal" holds); with
`recorded_stamps` each frame set also takes the frame's recorded stamp (`camera/recorded_stamp`), and
the trial's record carries it as the capture time (EpisodeRecord `header.stamp`).

Parameters: `executor` (sim | moveit), `scene` (wait for the simulator's scene in each frame set),
`recorded_stamps` (wait for the recorded stamp of each replayed frame),
`frame_wait_s`, `frame_slop_s`, `predict_accept_timeout_s`, `predict_timeout_s`, `predict_retries`,
`log_timeout_s`, `log_retry_period_s`, `max_undelivered`, `require_logger`, `auto_execute`.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, TimeReference
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray
from vla_r1_interfaces.action import ExecuteInstruction, Predict
from vla_r1_interfaces.msg import ManipulationPlan, SceneState
from vla_r1_interfaces.srv import LogEpisode

from vla_r1_ros import topics
from vla_r1_ros.core.delivery import DeliveryResult, Outbox
from vla_r1_ros.core.frame_sync import FrameSetSync
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.lifting import LiftedPrediction, LiftError, LiftParams, lift_prediction
from vla_r1_ros.core.planning import PickPlacePlan, PlanningParams, SafetyLimits, ValidatedPlan, plan_pick_and_place
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.prompts import TASKS, build_prompt
from vla_r1_ros.core.trial_flow import StageFailure, TrialFlow, TrialRecord, TrialSteps
from vla_r1_ros.executors import make_executor
from vla_r1_ros.executors.base import ArmExecutor, validate_for
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import depth_to_metres, intrinsics_from_camera_info, ns_to_stamp, stamp_to_ns
from vla_r1_ros.nodes.episode_msgs import FrameSet, episode_record_msg
from vla_r1_ros.nodes.plan_msgs import plan_markers, plan_msg
from vla_r1_ros.nodes.prediction_msgs import prediction_from_msg
from vla_r1_ros.nodes.spin import spin_nodes

COLOR, DEPTH, INFO, SCENE, RECORDED = "color", "depth", "camera_info", "scene", "recorded_stamp"
PREEMPT_WAIT_S = 5.0  # how long a goal waits for a preempted topic-instruction run to stop


class PlanningNode(Node):
    def __init__(self, context: ProcessContext, arm: ArmExecutor | None = None, **kwargs: Any):
        """`arm`: an executor to use instead of the `executor` parameter's (tests share a workcell)."""
        super().__init__("planning", **kwargs)
        params = {
            name: self.declare_parameter(name, default).value
            for name, default in (
                ("executor", "sim"),
                ("scene", True),  # the simulator publishes a scene per frame; a real camera does not
                ("recorded_stamps", False),  # a replayed recording publishes each frame's recorded stamp
                ("frame_wait_s", 3.0),
                ("frame_slop_s", 0.015),  # below half a frame period at 30 fps: never the neighbour
                ("predict_accept_timeout_s", 5.0),
                ("predict_timeout_s", 120.0),
                ("predict_retries", 1),  # goals whose acceptance never arrived are sent again this often
                ("log_timeout_s", 10.0),
                ("log_retry_period_s", 2.0),
                ("max_undelivered", 10),
                ("require_logger", True),
                ("auto_execute", False),
            )
        }
        self.params = params
        camera, workspace = context.config.camera, context.config.workspace
        self.base_frame = str(camera["frames"]["base"])
        self.camera_frame = str(camera["frames"]["camera_optical"])
        self.base_T_camera = camera_extrinsics(camera)
        self.lift_params = LiftParams.from_config(workspace, camera)
        self.planning_params = PlanningParams.from_config(workspace)
        self.limits = SafetyLimits.from_config(workspace)
        self.arm = arm if arm is not None else make_executor(params["executor"], context.config, context.workcell)

        self._group = ReentrantCallbackGroup()
        streams = (
            (COLOR, DEPTH, INFO)
            + ((SCENE,) if params["scene"] else ())
            + ((RECORDED,) if params["recorded_stamps"] else ())
        )
        self.frames = FrameSetSync(streams, slop_ns=int(float(params["frame_slop_s"]) * 1e9))
        self._busy = threading.Lock()  # one trial (one arm) at a time
        self._stop_requested = threading.Event()  # vla_r1/stop or a preempting goal: cleared per run
        self._topic_run = False  # the running trial came from vla_r1/instruction (a goal may preempt it)
        self.outbox = Outbox(self._deliver)

        # Reliable, keep last 5 (as the perception node publishes): a frame set must arrive whole.
        frames_qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        for stream, kind, topic in (
            (COLOR, Image, topics.COLOR),
            (DEPTH, Image, topics.DEPTH),
            (INFO, CameraInfo, topics.CAMERA_INFO),
            (SCENE, SceneState, topics.SCENE),
            (RECORDED, TimeReference, topics.RECORDED_STAMP),
        ):
            if stream in streams:
                self.create_subscription(
                    kind, topic, self._frame_callback(stream), frames_qos, callback_group=self._group
                )
        self.create_subscription(String, topics.INSTRUCTION, self._on_instruction, 10, callback_group=self._group)
        self.plan_pub = self.create_publisher(ManipulationPlan, topics.PLAN, 10)
        self.marker_pub = self.create_publisher(MarkerArray, topics.PLAN_MARKERS, 10)
        latched = QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
        )
        self.status_pub = self.create_publisher(String, topics.PLANNING_STATUS, latched)
        self._status = ""
        self._status_lock = threading.Lock()  # one status at a time: an older one never overwrites a newer
        self.predict_client = ActionClient(self, Predict, topics.PREDICT, callback_group=self._group)
        self.log_client = self.create_client(LogEpisode, topics.LOG_EPISODE, callback_group=self._group)
        self.server = ActionServer(
            self,
            ExecuteInstruction,
            topics.EXECUTE_INSTRUCTION,
            execute_callback=self._execute_goal,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=self._group,
        )
        self.create_service(Trigger, topics.STOP, self._on_stop, callback_group=self._group)
        self._publish_status()
        self.create_timer(float(params["log_retry_period_s"]), self._retry_and_report, callback_group=self._group)
        self.get_logger().info(f"planning node ready (executor: {self.arm.name}, frame set: {', '.join(streams)})")

    # --- camera -----------------------------------------------------------------------------------

    def _frame_callback(self, stream: str):
        def on_message(msg: Any) -> None:
            self.frames.add(stream, stamp_to_ns(msg.header.stamp), msg)

        return on_message

    def _perceive(self, not_before_ns: int) -> FrameSet:
        """The first complete frame set captured after the instruction arrived: the world may have changed
        (a reset, a person) since the last one, and a trial acts on the scene as it is now."""
        wait_s = float(self.params["frame_wait_s"])
        found = self.frames.wait_for_set(not_before_ns, wait_s)
        if found is None:
            newest = {s: self.frames.newest_stamp(s) for s in self.frames.streams}
            ages = ", ".join(
                f"{s}: none" if stamp is None else f"{s}: {(not_before_ns - stamp) / 1e9:+.2f} s before the goal"
                for s, stamp in newest.items()
            )
            raise StageFailure(
                "timeout", f"no complete frame set captured after the instruction in {wait_s} s ({ages})"
            )
        return FrameSet(found[COLOR], found[DEPTH], found[INFO], found.get(SCENE), found.get(RECORDED))

    # --- trial steps --------------------------------------------------------------------------------

    def _lift(self, prediction: Prediction, frames: FrameSet) -> LiftedPrediction:
        depth = frames.depth
        if depth.header.frame_id and depth.header.frame_id != self.camera_frame:
            raise LiftError(
                "bad_input", f"depth is in {depth.header.frame_id!r} but the extrinsics are for {self.camera_frame!r}"
            )
        if (depth.width, depth.height) != prediction.image_size:
            raise LiftError(
                "bad_input",
                f"the model saw a {prediction.image_size} image but the depth is {(depth.width, depth.height)}",
            )
        try:
            depth_m = depth_to_metres(depth)
        except ValueError as exc:  # LiftError for an encoding that is not depth; data shorter than its size
            raise LiftError("bad_input", f"cannot decode the depth frame: {exc}") from exc
        lifted = lift_prediction(
            depth_m,
            intrinsics_from_camera_info(frames.camera_info),
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

    def _predict(
        self, instruction: str, tasks: list[str], frames: FrameSet, goal_handle: Any, should_stop: Any
    ) -> Prediction:
        """Ask the inference node about the trial's own frame. A goal whose acceptance never arrives (a lost
        goal response) is sent again after `predict_accept_timeout_s`; the answer must come within
        `predict_timeout_s` of acceptance."""
        accept_s = float(self.params["predict_accept_timeout_s"])
        if not self.predict_client.wait_for_server(timeout_sec=accept_s):
            raise StageFailure("timeout", f"no Predict action server on {topics.PREDICT} (is the inference node up?)")
        goal = Predict.Goal(instruction=instruction, tasks=list(tasks), image=frames.color)
        if frames.scene is not None:
            goal.has_scene, goal.scene = True, frames.scene

        def on_feedback(feedback_msg: Any) -> None:
            if goal_handle is not None:
                text = feedback_msg.feedback.text
                goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage="predict", reasoning_chunk=text))

        handle = None
        for attempt in range(1 + int(self.params["predict_retries"])):
            future = self.predict_client.send_goal_async(goal, feedback_callback=on_feedback)
            if self._wait(future, accept_s, should_stop):
                handle = future.result()
                break
            future.cancel()
            self.get_logger().warning(f"Predict goal not acknowledged within {accept_s} s (attempt {attempt + 1})")
        if handle is None:
            if should_stop():
                raise StageFailure("cancelled", "cancelled while waiting for the inference node")
            raise StageFailure("timeout", f"the inference node never acknowledged the Predict goal ({accept_s} s each)")
        if not handle.accepted:
            raise StageFailure("timeout", "the inference node rejected the Predict goal (busy or not ready)")
        timeout_s = float(self.params["predict_timeout_s"])
        result_future = handle.get_result_async()
        if not self._wait(result_future, timeout_s, should_stop):
            handle.cancel_goal_async()
            if should_stop():
                raise StageFailure("cancelled", "cancelled while the model was predicting")
            raise StageFailure("timeout", f"the Predict action did not answer within {timeout_s} s")
        return prediction_from_msg(result_future.result().result.prediction)

    @staticmethod
    def _wait(future: Any, timeout_s: float, should_stop: Any) -> bool:
        """Wait for a future, giving up early when the trial is stopped. True when it is done."""
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        deadline = timeout_s
        while deadline > 0 and not done.wait(min(0.05, deadline)):
            if should_stop():
                return future.done()
            deadline -= 0.05
        return future.done()

    # --- publishing and logging -----------------------------------------------------------------

    def _plan_message(self, record: TrialRecord) -> ManipulationPlan:
        stamp = ns_to_stamp(record.frames.stamp_ns) if record.frames else self.get_clock().now().to_msg()
        if record.lift_error is not None:
            check, reason = "lift", str(record.lift_error)
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

    def _log(self, record: TrialRecord) -> str:
        """Queue the trial's record for the logger and try to deliver; '' when it is on disk, else why not."""
        prompts = [build_prompt(record.instruction, task) for task in record.tasks if task in TASKS]
        msg = episode_record_msg(
            record, self._plan_message(record), prompts, self.base_frame, self.get_clock().now().nanoseconds
        )
        self.outbox.put(record.trial_id, msg)
        tried = self._flush_outbox()
        if record.trial_id in self.outbox.pending_keys():
            reason = tried[record.trial_id].detail if record.trial_id in tried else self.outbox.last_error
            return reason or "waiting for earlier trials to be logged"
        return ""

    def _flush_outbox(self) -> dict[str, DeliveryResult]:
        return self.outbox.flush() if len(self.outbox) else {}

    def _retry_and_report(self) -> None:
        self._flush_outbox()
        self._publish_status()

    def _publish_status(self, refusal: str | None = None) -> None:
        """`planning/status`, when it changed: why goals are refused ("" when they are not), how many
        finished trials wait to be logged and the logger's last answer about them."""
        with self._status_lock:
            waiting = len(self.outbox)
            status = json.dumps(
                {
                    "refusal": self.refusal_reason() if refusal is None else refusal,
                    "undelivered": waiting,
                    "log_error": self.outbox.last_error if waiting else "",
                }
            )
            if status != self._status:
                self._status = status
                self.status_pub.publish(String(data=status))

    def _deliver(self, trial_id: str, record: Any) -> DeliveryResult:
        """One LogEpisode call; the logger answers once the episode is durably on disk."""
        if not self.log_client.service_is_ready():
            return DeliveryResult(False, f"no reward logger on {topics.LOG_EPISODE}")
        future = self.log_client.call_async(LogEpisode.Request(record=record))
        if not self._wait(future, float(self.params["log_timeout_s"]), lambda: False):
            future.cancel()
            return DeliveryResult(False, f"the reward logger did not confirm trial {trial_id} in time")
        response = future.result()
        if not response.logged:
            self.get_logger().error(f"trial {trial_id} NOT logged yet (kept, retrying): {response.message}")
        return DeliveryResult(bool(response.logged), response.index_line if response.logged else response.message)

    # --- the action ------------------------------------------------------------------------------

    def _on_goal(self, goal_request: Any) -> GoalResponse:
        refusal = self.refusal_reason()
        if refusal:
            self.get_logger().warning(f"rejecting ExecuteInstruction: {refusal}")
            self._publish_status(refusal)  # before the rejection reaches the client, which reads it
            return GoalResponse.REJECT
        # Taken here, released when the trial ends: a second goal arriving before the first one's
        # execute callback starts is rejected too. A dry run started from the topic gives way.
        if not self._busy.acquire(blocking=False):
            if not self._topic_run:
                self.get_logger().warning("rejecting ExecuteInstruction: a trial is already running")
                return GoalResponse.REJECT
            self._stop_requested.set()
            if not self._busy.acquire(timeout=PREEMPT_WAIT_S):
                self.get_logger().warning("rejecting ExecuteInstruction: the topic instruction run did not stop")
                return GoalResponse.REJECT
        self._topic_run = False
        return GoalResponse.ACCEPT

    def refusal_reason(self) -> str:
        """Why a trial must not start now ("" when it may): its record would have nowhere to go."""
        if self.params["require_logger"] and not self.log_client.service_is_ready():
            return f"no reward logger on {topics.LOG_EPISODE}: the trial could not be logged"
        waiting = len(self.outbox)
        if waiting >= int(self.params["max_undelivered"]):
            oldest = self.outbox.oldest_age_s()  # how long the log has been failing, for the operator
            return (
                f"{waiting} finished trials wait to be logged, the oldest for {oldest:.0f} s ({self.outbox.last_error})"
            )
        return ""

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

    def _run_trial(self, instruction: str, tasks: list[str], plan_only: bool, goal_handle: Any = None) -> TrialRecord:
        """One trial (self._busy held by the caller), its plan published and its record handed to the logger."""
        requested_ns = self.get_clock().now().nanoseconds

        def should_stop() -> bool:
            return self._stop_requested.is_set() or (goal_handle is not None and goal_handle.is_cancel_requested)

        def on_stage(stage: str) -> None:
            if goal_handle is not None:
                goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage=stage))

        flow = TrialFlow(
            TrialSteps(
                perceive=lambda: self._perceive(requested_ns),
                predict=lambda text, t, frames: self._predict(text, t, frames, goal_handle, should_stop),
                lift=self._lift,
                plan=self._plan,
                validate=self._validate,
                # The executor judges the outcome against the instructed object where it can (the sim).
                execute=lambda plan, stop: self.arm.execute(plan, stop, instruction=instruction),
            ),
            on_stage=on_stage,
            on_plan=self._publish_plan,
        )
        record = flow.run(instruction, tasks or list(TASKS), plan_only=plan_only, should_stop=should_stop)
        not_logged = self._log(record)
        self._publish_status()
        outcome = "success" if record.success else record.failure_stage
        self.get_logger().info(f"trial {record.trial_id}: {outcome} — {record.message}")
        if not_logged:
            record.message += f" (not logged yet, kept for the logger: {not_logged})"
        return record

    def _execute_goal(self, goal_handle: Any) -> ExecuteInstruction.Result:
        goal = goal_handle.request
        self._stop_requested.clear()  # a stop applies to what was running when it came
        try:  # self._busy was taken when the goal was accepted
            record = self._run_trial(goal.instruction, list(goal.tasks), goal.plan_only, goal_handle)
        finally:
            self._busy.release()
        goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage="done"))
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

    # --- instructions outside an action ----------------------------------------------------------

    def _on_instruction(self, msg: String) -> None:
        """A dry run (or, with auto_execute, a trial) of a topic instruction, only when nothing runs."""
        if self.refusal_reason() or not self._busy.acquire(blocking=False):
            self.get_logger().warning(f"ignoring instruction {msg.data!r}: busy or the logger is unavailable")
            return
        try:
            self._topic_run = True
            self._stop_requested.clear()
            execute = bool(self.get_parameter("auto_execute").value)  # may be switched at run time
            self._run_trial(msg.data, list(TASKS), plan_only=not execute)
        finally:
            self._topic_run = False
            self._busy.release()

    def destroy_node(self) -> None:
        self.arm.stop()  # a node going away must not leave the arm moving
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    sys.exit(spin_nodes(lambda context: [PlanningNode(context)], args))


if __name__ == "__main__":
    main()
