"""`planning_node`: owns each trial from the instruction to its logged record.

Serves `vla_r1/execute_instruction` (ExecuteInstruction). One trial (`core.trial_flow.TrialFlow`):
- perceive: the first complete frame set — colour, aligned depth, camera info and, from the simulator,
  its scene — captured after the goal arrived, matched once by the approximate-time rule
  (`core.frame_sync`), and kept for the whole trial;
- predict: the Predict action on the inference node, the goal carrying that very image (and scene);
  the answer's raw texts are re-parsed here with the parser's contract (nothing on the wire is trusted);
- lift (the same frame set's depth), plan + safety checks (nothing moves on a failed check), execute;
- one EpisodeRecord with everything, delivered to the reward logger at least once
  (`nodes.episode_delivery`, which also publishes `planning/status`: why goals are refused and what
  keeps records from the log). Goals are refused while no logger listens or while `max_undelivered`
  records wait.

Collision truth from the trial's own frame set (`collision_check`'s `SeenObstacles`): where no simulator
scene reports the tray (`scene:=false`: a real cell), the first frame set's depth measures it
(`core.tray.locate_tray`, within the doctor's tolerance of `collision.tray_when_unseen`; further off, or
not found, every trial is refused at `safety` naming the offset until it stands right); once measured
the pose is kept and logged. Before validation the frame set's depth above the table becomes obstacle
columns (`core.clutter.depth_clutter`: not the table, the tray, the arm, nor the object the answer
picks), checked by the executor like every configured box.

With `judge: vision` each trial whose arm moved ends with the camera judge: the arm goes to its observe
pose, a frame set captured after it got there and the trial's own frame set are judged
(`core.vision_judge`) against the object registry (`object_registry`, read at each use, so a run may
register its objects after the graph started); the record carries the after frames, the judge's masks,
its verdict and the simulator's beside it. `vla_r1/self_reset` (SelfReset) puts the scene back with the
arm (`core.reset_flow`): moves planned from depth, validated and executed as a trial's are.

An instruction on `vla_r1/instruction` (std_msgs/String) runs the same flow as a dry run (executed only
with `auto_execute:=true`) when nothing else runs; an action goal preempts such a run, so a flood of
topic instructions never blocks goals. `vla_r1/stop` (std_srvs/Trigger) halts the arm and ends whatever
is running as "cancelled".

A replayed recording's frames carry their playback stamps (so "captured after the goal" holds); with
`recorded_stamps` each frame set also takes the frame's recorded stamp (`camera/recorded_stamp`), and
the trial's record carries it as the capture time (EpisodeRecord `header.stamp`).

Parameters and their defaults: `config/nodes.yaml` `planning:`.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, TimeReference
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray
from vla_r1_interfaces.action import ExecuteInstruction
from vla_r1_interfaces.msg import ManipulationPlan, SceneState
from vla_r1_interfaces.srv import SelfReset

from vla_r1_ros import topics
from vla_r1_ros.core.clutter import ClutterSettings, depth_clutter
from vla_r1_ros.core.collision import NOTHING_SEEN, SeenObstacles
from vla_r1_ros.core.frame_sync import FrameSetSync
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.lifting import (
    GraspSurface,
    LiftedPrediction,
    LiftError,
    LiftParams,
    check_depth_for,
    lift_prediction,
)
from vla_r1_ros.core.object_registry import ObjectRegistry, RegistryError
from vla_r1_ros.core.outcomes import JUDGES, ExecutionResult, FailureStage
from vla_r1_ros.core.planning import PickPlacePlan, PlanningParams, SafetyLimits, ValidatedPlan, plan_pick_and_place
from vla_r1_ros.core.prediction import Prediction
from vla_r1_ros.core.prompts import TASKS
from vla_r1_ros.core.reset_flow import ResetFailure, ResetSteps, run_self_reset
from vla_r1_ros.core.self_reset import Hand, ResetImpossible, ResetMove, ResetSettings, check_layout, plan_reset
from vla_r1_ros.core.tabletop import RgbdView, tray_sample
from vla_r1_ros.core.tray import TrayNotFound, TrayOffConfig, TrayPose, TrayTolerance, locate_tray
from vla_r1_ros.core.trial_flow import CameraVerdict, StageFailure, TrialFlow, TrialRecord, TrialSteps
from vla_r1_ros.core.trial_slot import TrialSlot
from vla_r1_ros.core.vision_judge import JudgeSettings, judge_trial
from vla_r1_ros.executors import make_executor
from vla_r1_ros.executors.base import ArmExecutor, validate_for
from vla_r1_ros.nodes.context import ProcessContext
from vla_r1_ros.nodes.conversions import depth_to_metres, intrinsics_from_camera_info, stamp_to_ns
from vla_r1_ros.nodes.episode_delivery import EpisodeDelivery
from vla_r1_ros.nodes.episode_msgs import FRAMES_QOS, FrameSet, episode_record_msg, rgbd_view
from vla_r1_ros.nodes.parameters import declare_parameters
from vla_r1_ros.nodes.plan_msgs import plan_markers, trial_plan_msg
from vla_r1_ros.nodes.predict_client import PredictClient
from vla_r1_ros.nodes.scene_msgs import scene_from_msg
from vla_r1_ros.nodes.spin import spin_nodes

COLOR, DEPTH, INFO, SCENE, RECORDED = "color", "depth", "camera_info", "scene", "recorded_stamp"
STREAM_TOPICS = (
    (COLOR, Image, topics.COLOR),
    (DEPTH, Image, topics.DEPTH),
    (INFO, CameraInfo, topics.CAMERA_INFO),
    (SCENE, SceneState, topics.SCENE),
    (RECORDED, TimeReference, topics.RECORDED_STAMP),
)
PREEMPT_WAIT_S = 5.0  # how long a goal waits for a preempted topic-instruction run to stop


class PlanningNode(Node):
    def __init__(self, context: ProcessContext, arm: ArmExecutor | None = None, **kwargs: Any):
        """`arm`: an executor to use instead of the `executor` parameter's (tests share a workcell)."""
        super().__init__("planning", **kwargs)
        self.params = params = declare_parameters(self, context.config, "planning")
        camera, workspace = context.config.camera, context.config.workspace
        self.base_frame = str(camera["frames"]["base"])
        self.camera_frame = str(camera["frames"]["camera_optical"])
        self.base_T_camera = camera_extrinsics(camera)
        self.lift_params = LiftParams.from_config(workspace, camera)
        self.planning_params = PlanningParams.from_config(workspace)
        self.limits = SafetyLimits.from_config(workspace)
        self.arm = arm if arm is not None else make_executor(params["executor"], context.config, context.workcell)
        if params["judge"] not in JUDGES:
            raise ValueError(f"planning parameter judge: {params['judge']!r} is not one of {JUDGES}")
        self.judge_settings = JudgeSettings.from_config(workspace, camera)
        self.reset_settings = ResetSettings.from_config(workspace, camera, self.arm.gripper_opening_m)
        self.clutter_settings = ClutterSettings.from_config(context.config.workcell, workspace)
        self.configured_tray = TrayPose.configured(context.config.workcell)
        self.tray_tolerance = TrayTolerance.from_config(workspace)
        self.measured_tray: TrayPose | None = None  # where no scene reports it: measured once, then kept

        group = ReentrantCallbackGroup()
        streams = (COLOR, DEPTH, INFO) + ((SCENE,) if params["scene"] else ())
        streams += (RECORDED,) if params["recorded_stamps"] else ()
        self.frames = FrameSetSync(streams, slop_ns=int(float(params["frame_slop_s"]) * 1e9))
        for stream, kind, topic in STREAM_TOPICS:
            if stream in streams:
                self.create_subscription(kind, topic, self._frame_callback(stream), FRAMES_QOS, callback_group=group)
        self.slot = TrialSlot(PREEMPT_WAIT_S)  # one trial (one arm) at a time
        self.create_subscription(String, topics.INSTRUCTION, self._on_instruction, 10, callback_group=group)
        self.plan_pub = self.create_publisher(ManipulationPlan, topics.PLAN, 10)
        self.marker_pub = self.create_publisher(MarkerArray, topics.PLAN_MARKERS, 10)
        self.delivery = EpisodeDelivery(self, params, group)
        self.predictor = PredictClient(self, params, group)
        self.server = ActionServer(
            self,
            ExecuteInstruction,
            topics.EXECUTE_INSTRUCTION,
            execute_callback=self._execute_goal,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=group,
        )
        self.create_service(Trigger, topics.STOP, self._on_stop, callback_group=group)
        self.create_service(SelfReset, topics.SELF_RESET, self._on_self_reset, callback_group=group)
        self.get_logger().info(f"planning node ready (executor: {self.arm.name}, frame set: {', '.join(streams)})")

    # --- the trial's steps --------------------------------------------------------------------------

    def _frame_callback(self, stream: str):
        return lambda msg: self.frames.add(stream, stamp_to_ns(msg.header.stamp), msg)

    def _perceive(self, not_before_ns: int) -> FrameSet:
        """The first complete frame set captured after the instruction arrived: the world may have changed
        (a reset, a person) since the last one, and a trial acts on the scene as it is now."""
        wait_s = float(self.params["frame_wait_s"])
        found = self.frames.wait_for_set(not_before_ns, wait_s)
        if found is None:
            raise StageFailure(
                FailureStage.TIMEOUT,
                f"no complete frame set captured after the instruction in {wait_s} s "
                f"({self.frames.missing_set_reason(not_before_ns)})",
            )
        return FrameSet(found[COLOR], found[DEPTH], found[INFO], found.get(SCENE), found.get(RECORDED))

    def _lift(self, prediction: Prediction, frames: FrameSet) -> LiftedPrediction:
        depth = frames.depth
        check_depth_for(depth.header.frame_id, (depth.width, depth.height), self.camera_frame, prediction.image_size)
        try:
            depth_m = depth_to_metres(depth)
        except ValueError as exc:  # LiftError for an encoding that is not depth; data shorter than its size
            raise LiftError("bad_input", f"cannot decode the depth frame: {exc}") from exc
        intrinsics = intrinsics_from_camera_info(frames.camera_info)
        lifted = lift_prediction(
            depth_m, intrinsics, prediction.box_px, prediction.waypoints_px, self.lift_params, self.camera_frame
        )
        return lifted.transformed(self.base_T_camera, self.base_frame)

    def _plan(self, lifted: LiftedPrediction) -> PickPlacePlan:
        return plan_pick_and_place(lifted.grasp, lifted.surface_waypoints, self.planning_params)

    def _validate(self, plan: PickPlacePlan, seen: SeenObstacles = NOTHING_SEEN) -> ValidatedPlan:
        return validate_for(self.arm, plan, self.limits, self.planning_params, seen)

    def _measured_tray(self, frames: FrameSet) -> TrayPose | None:
        """The tray measured from the frame set's depth where no simulator scene reports it (None: the
        scene's tray is the truth), kept once measured; StageFailure when it is not where config says."""
        if frames.scene is not None:
            return None
        if self.measured_tray is not None:
            return self.measured_tray
        points = tray_sample(self._view(frames), self.lift_params)
        try:
            self.measured_tray = locate_tray(points, self.configured_tray, self.limits.table_z, self.tray_tolerance)
        except (TrayNotFound, TrayOffConfig) as exc:
            raise StageFailure(
                FailureStage.SAFETY,
                f"the tray measured from depth is not where config/workcell.yaml collision.tray_when_unseen "
                f"says: {exc}; nothing moves until it stands there (or the config says where it stands)",
            ) from exc
        self.get_logger().info(f"tray measured from depth at {self.measured_tray.describe()}")
        return self.measured_tray

    def _seen_obstacles(self, frames: FrameSet, picked: GraspSurface | None, tray: TrayPose | None) -> SeenObstacles:
        """The measured tray and the depth clutter of the frame set (the `picked` object left out)."""
        if not self.clutter_settings.enabled:
            return SeenObstacles(tray)
        started = time.perf_counter()
        where = tray or (TrayPose.of(scene_from_msg(frames.scene).tray) if frames.scene is not None else None)
        points = self._view(frames).base_points(self.lift_params, self.clutter_settings.pixel_stride)
        clutter = depth_clutter(
            points, where or self.configured_tray, picked, self.arm.arm_chain(), self.clutter_settings
        )
        self.get_logger().debug(f"depth clutter: {len(clutter)} boxes in {time.perf_counter() - started:.3f} s")
        return SeenObstacles(tray, clutter)

    def _execute(self, plan: ValidatedPlan, should_stop, instruction: str) -> ExecutionResult:
        result = self.arm.execute(plan, should_stop, instruction=instruction)
        # Only frame sets with the simulator's scene show the world the simulator judges.
        return result if self.params["scene"] else result.unseen_by_the_camera()

    def _view(self, frames: FrameSet) -> RgbdView:
        return rgbd_view(frames, self.base_T_camera)

    def _registry(self) -> ObjectRegistry:
        path = str(self.params["object_registry"])
        if not path:
            raise RegistryError("no object registry (planning parameter object_registry; vla-r1 objects register)")
        return ObjectRegistry.load(Path(path))

    def _observed_frames(self, should_stop) -> FrameSet:
        """The arm at its observe pose, then the first frame set captured after it got there."""
        blocked = self.arm.observe(should_stop)
        if blocked:
            raise StageFailure("", f"the arm did not reach its observe pose: {blocked}")
        return self._perceive(self.get_clock().now().nanoseconds)

    def _judge(self, record: TrialRecord, should_stop) -> CameraVerdict:
        """The camera's verdict on a trial: its own frame set against one captured after it, at the observe pose."""
        try:
            registry = self._registry()
        except RegistryError as exc:
            raise StageFailure("", str(exc)) from exc
        after = self._observed_frames(should_stop)
        verdict = judge_trial(
            self._view(record.frames),
            self._view(after),
            registry,
            record.instruction,
            self.arm.finger_width(),
            self.judge_settings,
            now_ns=self.get_clock().now().nanoseconds,
            gripper_opening_m=self.arm.gripper_opening_m,
        )
        return CameraVerdict(after, verdict)

    def _self_reset(self, seed: int) -> SelfReset.Response:
        response = SelfReset.Response()
        try:
            registry = self._registry()
        except RegistryError as exc:
            response.message = str(exc)
            return response

        seen: dict[str, Any] = {}  # the last frame set (the one the moves are planned on) and its tray

        def perceive() -> RgbdView:
            try:
                frames = seen["frames"] = self._perceive(self.get_clock().now().nanoseconds)
                seen["tray"] = self._measured_tray(frames)
            except StageFailure as exc:
                raise ResetFailure(str(exc)) from exc
            return self._view(frames)

        def validate(move: ResetMove, plan: PickPlacePlan) -> ValidatedPlan:
            # Depth clutter of the planning view: an object an earlier move took away still stands in it
            # (an obstacle too many), and the spot it went to keeps the reset's clearance from the rest.
            return self._validate(plan, self._seen_obstacles(seen["frames"], move.grasp, seen["tray"]))

        def stopping() -> bool:
            return self.slot.stop_requested

        outcome = run_self_reset(
            ResetSteps(
                observe=lambda: self.arm.observe(stopping),
                perceive=perceive,
                plan_moves=lambda view, rng: plan_reset(view, registry, rng, self.reset_settings, self._hand()),
                plan=lambda move: move.plan,
                validate=validate,
                execute=lambda plan: self.arm.execute(plan, stopping),
                check_layout=lambda view: check_layout(view, registry, self.reset_settings),
            ),
            seed,
            impossible=(ResetImpossible,),
        )
        response.success, response.message, response.moved = outcome.success, outcome.message, len(outcome.moved)
        response.layout = json.dumps({name: [float(v) for v in pose] for name, pose in outcome.layout.items()})
        return response

    def _hand(self) -> Hand:
        return Hand(self.arm.tcp_pose(), self.arm.finger_width())

    def _publish_plan(self, record: TrialRecord) -> None:
        msg = trial_plan_msg(record, self.base_frame, self.get_clock().now().to_msg())
        self.plan_pub.publish(msg)
        markers = plan_markers(
            record.plan, self.limits, frame_id=self.base_frame, stamp=msg.header.stamp, feasible=msg.feasible
        )
        self.marker_pub.publish(markers)
        if not msg.feasible:
            self.get_logger().warning(f"trial {record.trial_id}: plan rejected ({msg.failed_check}): {msg.reason}")

    def _run_trial(self, instruction: str, tasks: list[str], plan_only: bool, goal_handle: Any = None) -> TrialRecord:
        """One trial (the slot held by the caller), its plan published and its record handed to the logger."""
        requested_ns = self.get_clock().now().nanoseconds

        def should_stop() -> bool:
            return self.slot.stop_requested or (goal_handle is not None and goal_handle.is_cancel_requested)

        def on_stage(stage: str) -> None:
            if goal_handle is not None:
                goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage=stage))

        def on_text(text: str) -> None:
            if goal_handle is not None:
                goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage="predict", reasoning_chunk=text))

        trial: dict[str, Any] = {}  # this trial's frame set, measured tray and lifted answer, for validation

        def perceive() -> FrameSet:
            trial["frames"] = self._perceive(requested_ns)
            return trial["frames"]

        def lift(prediction: Prediction, frames: FrameSet) -> LiftedPrediction:
            # Measured here, not at perceive: a refusal then keeps the frame set and the answer it refused
            # in the trial's record (a record ending at `safety` without its frames is not logged).
            trial["tray"] = self._measured_tray(frames)
            trial["lifted"] = self._lift(prediction, frames)
            return trial["lifted"]

        def validate(plan: PickPlacePlan) -> ValidatedPlan:
            return self._validate(plan, self._seen_obstacles(trial["frames"], trial["lifted"].grasp, trial["tray"]))

        flow = TrialFlow(
            TrialSteps(
                perceive=perceive,
                predict=lambda text, t, frames: self.predictor.predict(text, t, frames, on_text, should_stop),
                lift=lift,
                plan=self._plan,
                validate=validate,
                # The executor judges the outcome against the instructed object where it can (the sim).
                execute=lambda plan, stop: self._execute(plan, stop, instruction),
                judge=(lambda trial: self._judge(trial, should_stop)) if self.params["judge"] == "vision" else None,
            ),
            on_stage=on_stage,
            on_plan=self._publish_plan,
        )
        record = flow.run(instruction, tasks or list(TASKS), plan_only=plan_only, should_stop=should_stop)
        now = self.get_clock().now()
        plan = trial_plan_msg(record, self.base_frame, now.to_msg())
        not_logged = self.delivery.log(
            record.trial_id, episode_record_msg(record, plan, self.base_frame, now.nanoseconds)
        )
        self.get_logger().info(f"trial {record.trial_id}: {record.failure_stage or 'success'} — {record.message}")
        if record.traceback:
            self.get_logger().error(
                f"trial {record.trial_id}: internal error (a bug, not the policy's):\n{record.traceback}"
            )
        if not_logged:
            record.message += f" (not logged yet, kept for the logger: {not_logged})"
        return record

    # --- goals, cancel, stop -----------------------------------------------------------------------

    def _on_goal(self, goal_request: Any) -> GoalResponse:
        refusal = self.delivery.refusal_reason()
        if refusal:
            self.get_logger().warning(f"rejecting ExecuteInstruction: {refusal}")
            self.delivery.publish_status(refusal)  # before the rejection reaches the client, which reads it
            return GoalResponse.REJECT
        # Taken here, released when the trial ends: a second goal arriving before the first one's
        # execute callback starts is rejected too. A dry run started from the topic gives way.
        busy = self.slot.take_for_goal()
        if busy:
            self.get_logger().warning(f"rejecting ExecuteInstruction: {busy}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute_goal(self, goal_handle: Any) -> ExecuteInstruction.Result:
        goal = goal_handle.request
        self.slot.begin()
        try:  # the slot was taken when the goal was accepted
            record = self._run_trial(goal.instruction, list(goal.tasks), goal.plan_only, goal_handle)
        finally:
            self.slot.release()
        goal_handle.publish_feedback(ExecuteInstruction.Feedback(stage="done"))
        if record.failure_stage == FailureStage.CANCELLED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif record.failure_stage == FailureStage.CANCELLED:  # stopped through vla_r1/stop, not by its client
            goal_handle.abort()
        else:  # a cancel that came after the trial finished does not undo what it did
            goal_handle.succeed()
        return ExecuteInstruction.Result(
            success=record.success,
            message=record.message,
            episode_id=record.trial_id,
            failure_stage=record.failure_stage,
        )

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        self.arm.stop()  # halts a motion in progress now; the trial then ends as "cancelled"
        return CancelResponse.ACCEPT

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.slot.stop()
        self.arm.stop()
        running = self.slot.running
        self.get_logger().warning(f"stop requested ({'a trial was running' if running else 'nothing was running'})")
        response.success = True  # the arm is halted either way
        response.message = "stopped the running trial" if running else "nothing was running; the arm is halted"
        return response

    def _on_self_reset(self, request: SelfReset.Request, response: SelfReset.Response) -> SelfReset.Response:
        busy = self.slot.take_for_goal()
        if busy:
            response.message = f"not reset: {busy}"
            return response
        self.slot.begin()
        try:  # one arm: a reset holds the slot a trial would
            result = self._self_reset(int(request.seed))
        except Exception as exc:  # a bug of ours: answered (the run calls the operator), not left unanswered
            self.get_logger().error(f"self-reset: internal error:\n{traceback.format_exc()}")
            result = SelfReset.Response(success=False, message=f"internal error in the self-reset: {exc!r}")
        finally:
            self.slot.release()
        self.get_logger().info(
            f"self-reset (seed {request.seed}): {'done' if result.success else 'FAILED'}: {result.message}"
        )
        return result

    def _on_instruction(self, msg: String) -> None:
        """A dry run (or, with auto_execute, a trial) of a topic instruction, only when nothing runs."""
        if self.delivery.refusal_reason() or not self.slot.take_for_topic():
            self.get_logger().warning(f"ignoring instruction {msg.data!r}: busy or the logger is unavailable")
            return
        try:
            self.slot.begin()
            execute = bool(self.get_parameter("auto_execute").value)  # may be switched at run time
            self._run_trial(msg.data, list(TASKS), plan_only=not execute)
        finally:
            self.slot.release()

    def destroy_node(self) -> None:
        self.arm.stop()  # a node going away must not leave the arm moving
        self.delivery.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    sys.exit(spin_nodes(lambda context: [PlanningNode(context)], args))


if __name__ == "__main__":
    main()
