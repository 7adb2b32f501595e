"""EpisodeRecord: built by the planning node from its trial, read by the reward logger (the ROS adapter).

One record carries a whole trial — its frame set, the scene if the simulator gave one, the prompts, the
raw model text and its parse, the plan and its validation, the outcome and stage timings — so the
logger converts and writes; it never looks anything up by timestamp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, TimeReference
from vla_r1_interfaces.msg import EpisodeRecord, ManipulationPlan, SceneState

from vla_r1_ros.core.episodes import CameraFrame, CameraJudgement, SimulatorVerdict, TrialLog
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.prompts import TASKS, build_prompt
from vla_r1_ros.core.scene import Scene
from vla_r1_ros.core.tabletop import RgbdView
from vla_r1_ros.core.trial_flow import TrialRecord
from vla_r1_ros.nodes.conversions import (
    depth_to_metres,
    depth_to_mm,
    image_to_numpy,
    intrinsics_from_camera_info,
    ns_to_stamp,
    numpy_to_image,
    point_msg,
    stamp_to_ns,
)
from vla_r1_ros.nodes.plan_msgs import plan_json
from vla_r1_ros.nodes.prediction_msgs import prediction_from_msg, prediction_msg
from vla_r1_ros.nodes.scene_msgs import scene_from_msg

# Reliable, keep last 5 (as the perception node publishes): a frame set must arrive whole.
FRAMES_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


@dataclass(frozen=True)
class FrameSet:
    """One camera frame set, taken once at the start of a trial and kept with it."""

    color: Image
    depth: Image
    camera_info: CameraInfo
    scene: SceneState | None = None  # the simulator's ground truth of this frame
    recorded_stamp: TimeReference | None = None  # a replayed frame: the stamp it was recorded with

    @property
    def stamp_ns(self) -> int:
        return stamp_to_ns(self.color.header.stamp)

    @property
    def captured_ns(self) -> int:
        """When the frame was captured: its stamp, or for a replayed frame the stamp it was recorded with."""
        return self.stamp_ns if self.recorded_stamp is None else stamp_to_ns(self.recorded_stamp.time_ref)


def rgbd_view(frames: FrameSet, base_T_camera: RigidTransform) -> RgbdView:
    """A frame set as the camera judge, the registry and the self-reset see it (pixels, metres, camera)."""
    color = image_to_numpy(frames.color)
    if frames.color.encoding == "bgr8":
        color = color[:, :, ::-1]
    return RgbdView(
        color=np.ascontiguousarray(color),
        depth_m=depth_to_metres(frames.depth),
        intrinsics=intrinsics_from_camera_info(frames.camera_info),
        base_T_camera=base_T_camera,
        stamp_ns=frames.stamp_ns,
    )


def episode_record_msg(record: TrialRecord, plan: ManipulationPlan, base_frame: str, now_ns: int) -> EpisodeRecord:
    """Everything one trial produced, for the reward logger: its frame set, the prompts the model was
    asked (the official layout, `core.prompts`), the prediction, the plan and the outcome."""
    msg = EpisodeRecord()
    frames: FrameSet | None = record.frames
    # The capture time: a replayed frame's images carry its playback stamp, the record its recorded one.
    msg.header.stamp = ns_to_stamp(frames.captured_ns if frames is not None else now_ns)
    msg.header.frame_id = base_frame
    msg.trial_id = record.trial_id
    msg.instruction = record.instruction
    msg.tasks = list(record.tasks)
    msg.prompts = [build_prompt(record.instruction, task) for task in record.tasks if task in TASKS]
    if frames is not None:
        msg.color, msg.depth, msg.camera_info = frames.color, frames.depth, frames.camera_info
        if frames.scene is not None:
            msg.has_scene, msg.scene = True, frames.scene
        if record.prediction is not None:
            msg.prediction = prediction_msg(record.prediction, frames.color.header.stamp, frames.color.header.frame_id)
    msg.plan = plan
    msg.executed_ee_path = [point_msg(p) for p in record.ee_path]
    msg.success = record.success
    msg.failure_stage = record.failure_stage
    msg.outcome_source = record.outcome_source
    # An internal error's traceback goes into the trial's log, not into the goal's short answer.
    msg.message = record.message + (f"\n{record.traceback}" if record.traceback else "")
    msg.stage_names = list(record.stage_names)
    msg.stage_seconds = [float(s) for s in record.stage_seconds]
    if record.camera is not None:
        after: FrameSet | None = record.camera.after_frames
        if after is not None:
            msg.has_after_frames, msg.after_color, msg.after_depth = True, after.color, after.depth
        masks = record.camera.verdict.evidence
        msg.judge_mask_names = list(masks)
        msg.judge_masks = [numpy_to_image(np.where(mask, 255, 0).astype(np.uint8), "mono8") for mask in masks.values()]
        msg.vision_verdict = json.dumps(
            record.camera.verdict.to_json() | {"asks_operator": not record.camera.verdict.judged}
        )
    if record.simulator_verdict is not None:
        msg.has_simulator_verdict = True
        msg.simulator_success = record.simulator_verdict.success
        msg.simulator_failure_stage = record.simulator_verdict.failure_stage
    return msg


def trial_from_msg(msg: EpisodeRecord) -> TrialLog:
    prediction = prediction_from_msg(msg.prediction)
    if not msg.prediction.tasks:  # the trial ended before the model was asked (no frame, cancelled)
        prediction = type(prediction).failed(msg.instruction, msg.tasks, "the policy was not asked")
    return TrialLog(
        trial_id=msg.trial_id,
        instruction=msg.instruction,
        stamp_ns=stamp_to_ns(msg.header.stamp),
        prediction=prediction,
        plan=plan_json(msg.plan),
        executed_ee_path=[[p.x, p.y, p.z] for p in msg.executed_ee_path],
        success=bool(msg.success),
        failure_stage=msg.failure_stage,
        outcome_source=msg.outcome_source,
        message=msg.message,
        prompts=tuple(msg.prompts),
        timings=dict(zip(msg.stage_names, msg.stage_seconds, strict=False)),
        camera_judgement=camera_judgement_of(msg),
        simulator_verdict=(
            SimulatorVerdict(bool(msg.simulator_success), msg.simulator_failure_stage)
            if msg.has_simulator_verdict
            else None
        ),
    )


def camera_judgement_of(msg: EpisodeRecord) -> CameraJudgement | None:
    """The camera judge's part of a record; a verdict that is not JSON is logged as such, not lost."""
    if not msg.vision_verdict:
        return None
    notes: list[str] = []
    after = frame_from_msg(msg, notes, color=msg.after_color, depth=msg.after_depth) if msg.has_after_frames else None
    masks = {name: image_to_numpy(mask) > 0 for name, mask in zip(msg.judge_mask_names, msg.judge_masks, strict=False)}
    try:
        verdict = json.loads(msg.vision_verdict) if msg.vision_verdict else {}
    except json.JSONDecodeError as exc:
        verdict = {"unreadable": f"{exc}"}
    if not isinstance(verdict, dict):
        verdict = {"unreadable": "not a JSON object"}
    return CameraJudgement(after or CameraFrame(), masks, verdict | ({"notes": notes} if notes else {}))


def camera_info_json(msg: CameraInfo) -> dict[str, Any]:
    return {
        "frame_id": msg.header.frame_id,
        "stamp_ns": stamp_to_ns(msg.header.stamp),
        "width": int(msg.width),
        "height": int(msg.height),
        "k": [float(v) for v in msg.k],
        "d": [float(v) for v in msg.d],
        "distortion_model": msg.distortion_model,
    }


def frame_from_msg(
    msg: EpisodeRecord, notes: list[str], color: Image | None = None, depth: Image | None = None
) -> CameraFrame:
    """The record's frame set as arrays (or the `color` and `depth` given, with its camera info: the after
    frame set); a part that is absent or unreadable is a note, not a lost trial."""
    color_msg = msg.color if color is None else color
    depth_msg = msg.depth if depth is None else depth

    def convert(part: Any, what: str, to_array: Any) -> Any:
        if getattr(part, "width", 1) == 0:
            notes.append(f"the record carries no {what}")
            return None
        try:
            return to_array(part)
        except ValueError as exc:
            notes.append(f"{what} unreadable: {exc}")
            return None

    color = convert(color_msg, "colour frame", image_to_numpy)
    if color is not None and color_msg.encoding == "bgr8":
        color = np.ascontiguousarray(color[:, :, ::-1])
    return CameraFrame(
        color=color,
        depth=convert(depth_msg, "aligned depth frame", depth_to_mm),
        camera_info=convert(msg.camera_info, "camera info", camera_info_json),
    )


def scene_of(msg: EpisodeRecord) -> Scene | None:
    return scene_from_msg(msg.scene) if msg.has_scene else None
