"""EpisodeRecord: built by the planning node from its trial, read by the reward logger (the ROS adapter).

One record carries a whole trial — its frame set, the scene if the simulator gave one, the prompts, the
raw model text and its parse, the plan and its validation, the outcome and stage timings — so the
logger converts and writes; it never looks anything up by timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, TimeReference
from vla_r1_interfaces.msg import EpisodeRecord, ManipulationPlan, SceneState

from vla_r1_ros.core.episodes import CameraFrame, TrialLog
from vla_r1_ros.core.prompts import TASKS, build_prompt
from vla_r1_ros.core.scene import Scene
from vla_r1_ros.core.trial_flow import TrialRecord
from vla_r1_ros.nodes.conversions import depth_to_mm, image_to_numpy, ns_to_stamp, point_msg, stamp_to_ns
from vla_r1_ros.nodes.plan_msgs import plan_json
from vla_r1_ros.nodes.prediction_msgs import prediction_from_msg, prediction_msg
from vla_r1_ros.nodes.scene_msgs import scene_from_msg


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
    )


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


def frame_from_msg(msg: EpisodeRecord, notes: list[str]) -> CameraFrame:
    """The record's frame set as arrays; a part that is absent or unreadable is a note, not a lost trial."""

    def convert(part: Any, what: str, to_array: Any) -> Any:
        if getattr(part, "width", 1) == 0:
            notes.append(f"the record carries no {what}")
            return None
        try:
            return to_array(part)
        except ValueError as exc:
            notes.append(f"{what} unreadable: {exc}")
            return None

    color = convert(msg.color, "colour frame", image_to_numpy)
    if color is not None and msg.color.encoding == "bgr8":
        color = np.ascontiguousarray(color[:, :, ::-1])
    return CameraFrame(
        color=color,
        depth=convert(msg.depth, "aligned depth frame", depth_to_mm),
        camera_info=convert(msg.camera_info, "camera info", camera_info_json),
    )


def scene_of(msg: EpisodeRecord) -> Scene | None:
    return scene_from_msg(msg.scene) if msg.has_scene else None
