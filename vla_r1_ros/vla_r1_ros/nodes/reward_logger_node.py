"""`reward_logger`: writes every finished trial to the episode store and announces it.

Interfaces (docs/ARCHITECTURE.md, docs/episodes.md):
- subscribes (reliable, kept in small ring buffers keyed by stamp) `camera/color/image_raw`,
  `camera/aligned_depth_to_color/image_raw`, `camera/color/camera_info`, and `workcell/scene`
  (simulator ground truth, stamped like its frame);
- subscribes `vla_r1/episode` (EpisodeRecord, reliable): the frame of a trial is the one whose stamp
  matches the prediction's header stamp (exactly, or within `stamp_tolerance_s`);
- publishes `vla_r1/episode_logged` (std_msgs/String): the JSON index line of each written episode.

Parameters: `log_dir` (runs/latest), `reference_source` (auto | simulator | successful_trial | none),
`buffer_size` (frames kept per topic), `stamp_tolerance_s`, `late_message_wait_s`, `retry_period_s`.

A finished trial is never dropped: a missing or unreadable frame is logged as a note and the episode
is written without it; a failed write (disk full) is reported and retried every `retry_period_s`, and once
more at shutdown. A trial the store still cannot write then is saved as JSON under `unlogged_trials_dir()`
(its path logged at error level) or, if even that fails, logged whole. Writing (PNG encoding, fsyncs) runs
on one worker thread, off the executor, in arrival order.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from geometry_msgs.msg import Pose
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from vla_r1_interfaces.msg import EpisodeRecord, ManipulationPlan, SceneState

from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.episodes import (
    CameraFrame,
    EpisodeIndexPending,
    EpisodeStore,
    EpisodeStoreError,
    References,
    ReferenceSource,
    TrialLog,
    episode_document,
    select_references,
    write_json_atomic,
)
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.nodes.conversions import depth_to_mm, image_to_numpy, nearest_by_stamp, stamp_to_ns
from vla_r1_ros.nodes.prediction_msgs import prediction_from_msg
from vla_r1_ros.nodes.scene_msgs import scene_from_msg
from vla_r1_ros.nodes.spin import spin_nodes

COLOR_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "camera/color/camera_info"
SCENE_TOPIC = "workcell/scene"
EPISODE_TOPIC = "vla_r1/episode"
LOGGED_TOPIC = "vla_r1/episode_logged"


def unlogged_trials_dir() -> Path:
    """Where trials go that the episode store still cannot write at shutdown. The temp directory, not
    next to the log: whatever made the store fail (full disk, unwritable or vanished log directory) is
    most likely a problem of the log's filesystem, not of this one."""
    return Path(tempfile.gettempdir()) / "vla_r1_unlogged"


def _unlogged_trial_path(directory: Path, trial_id: str) -> Path:
    # The trial id comes off the wire: keep it one plain, visible file name.
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", trial_id).lstrip(".") or "trial"
    path, copy = directory / f"{name}.json", 1
    while path.exists():  # an earlier run's trial of the same id is not overwritten
        copy += 1
        path = directory / f"{name}-{copy}.json"
    return path


class PendingWrite(NamedTuple):
    """One trial ready for the store: the arguments of `EpisodeStore.write`."""

    trial: TrialLog
    frame: CameraFrame
    references: References
    notes: list[str]


class StampBuffer:
    """The last few messages of one topic, looked up by header stamp (thread-safe)."""

    def __init__(self, size: int):
        self._items: deque[Any] = deque(maxlen=size)
        self._changed = threading.Condition()

    def add(self, msg: Any) -> None:
        with self._changed:
            self._items.append(msg)
            self._changed.notify_all()

    def find(self, stamp_ns: int, tolerance_ns: int, wait_s: float = 0.0) -> Any | None:
        """The message with this stamp, else the nearest one within the tolerance, else None; waits up to
        `wait_s` for it to arrive."""
        found = None

        def match() -> bool:
            nonlocal found
            found = nearest_by_stamp(list(self._items), stamp_ns, tolerance_ns)
            return found is not None

        with self._changed:
            self._changed.wait_for(match, timeout=max(0.0, wait_s))
        return found

    def latest(self) -> Any | None:
        with self._changed:
            return self._items[-1] if self._items else None


def _pose_json(pose: Pose) -> dict[str, list[float]]:
    p, o = pose.position, pose.orientation
    return {"position": [p.x, p.y, p.z], "orientation": [o.x, o.y, o.z, o.w]}


def plan_json(msg: ManipulationPlan) -> dict[str, Any]:
    """The plan as JSON; poses only when the plan carries any (lifting failed: it carries none)."""
    data: dict[str, Any] = {"feasible": bool(msg.feasible), "failed_check": msg.failed_check, "reason": msg.reason}
    if msg.carry_waypoints:
        point = msg.grasp_surface_point
        data.update(
            pre_grasp_pose=_pose_json(msg.pre_grasp_pose),
            grasp_pose=_pose_json(msg.grasp_pose),
            grasp_surface_point=[point.x, point.y, point.z],
            carry_waypoints=[_pose_json(p) for p in msg.carry_waypoints],
            place_pose=_pose_json(msg.place_pose),
            speed_scaling=float(msg.speed_scaling),
        )
    trajectory = msg.joint_trajectory
    if trajectory.points:
        data["joint_trajectory"] = {
            "joint_names": list(trajectory.joint_names),
            "positions": [[float(v) for v in point.positions] for point in trajectory.points],
        }
    return data


def trial_from_msg(msg: EpisodeRecord, stamp_ns: int) -> TrialLog:
    prediction = prediction_from_msg(msg.prediction)
    parsed = {
        "model_id": prediction.model_id,
        "valid": prediction.valid,
        "error": prediction.error,
        "format_reward": prediction.format_reward,
        "inference_latency_s": prediction.latency_s,
        "image_size": list(prediction.image_size),
        "box_normalized": None if prediction.box is None else list(prediction.box),
        "box_px": None if prediction.box_px is None else [int(v) for v in prediction.box_px],
        "waypoints_normalized": None if prediction.waypoints is None else prediction.waypoints.tolist(),
        "waypoints_px": None if prediction.waypoints_px is None else prediction.waypoints_px.tolist(),
        "reasoning": {task: prediction.reasoning.get(task, "") for task in prediction.tasks},
    }
    return TrialLog(
        trial_id=msg.trial_id,
        instruction=msg.instruction or prediction.instruction,
        stamp_ns=stamp_ns,
        tasks=prediction.tasks,
        raw_texts=dict(zip(prediction.tasks, prediction.raw_texts, strict=False)),
        prediction=parsed,
        plan=plan_json(msg.plan),
        executed_ee_path=[[p.x, p.y, p.z] for p in msg.executed_ee_path],
        success=bool(msg.success),
        failure_stage=msg.failure_stage,
        message=msg.message,
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


class RewardLoggerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("reward_logger", **kwargs)
        self.declare_parameter("log_dir", "runs/latest")
        self.declare_parameter("reference_source", str(ReferenceSource.AUTO))
        self.declare_parameter("buffer_size", 30)
        # Below half a frame period at 30 fps: never the neighbouring frame.
        self.declare_parameter("stamp_tolerance_s", 0.015)
        self.declare_parameter("retry_period_s", 5.0)
        # A frame's message that has not arrived when the trial's episode does is waited for this long.
        # Measured in the sim demo: a few workcell/scene messages arrive up to 2.8 s after their stamp
        # (reliable delivery repairing a lost sample; Fast DDS's default heartbeat period is 3 s).
        self.declare_parameter("late_message_wait_s", 3.5)

        self.reference_source = ReferenceSource(self.get_parameter("reference_source").value)
        if self.reference_source is ReferenceSource.OPERATOR:
            raise ValueError("reference_source 'operator' comes from labels after the fact, not from the logger")
        size = int(self.get_parameter("buffer_size").value)
        self._tolerance_ns = int(float(self.get_parameter("stamp_tolerance_s").value) * 1e9)
        self._late_wait_s = float(self.get_parameter("late_message_wait_s").value)
        # Where the camera is (hand-eye calibration in config/camera.yaml): projects executed paths.
        self.base_T_camera = camera_extrinsics(load_config("camera"))
        self.store = EpisodeStore(self.get_parameter("log_dir").value)
        if self.store.recovered:
            self.get_logger().warning(f"re-indexed episodes left by a crash: {', '.join(self.store.recovered)}")

        self._buffers = {topic: StampBuffer(size) for topic in (COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC, SCENE_TOPIC)}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="episode_writer")
        self._failed: deque[PendingWrite] = deque()  # writes that raised EpisodeStoreError, retried in order
        self._failed_lock = threading.Lock()
        self._shutting_down = False  # set under _failed_lock: from then on destroy_node does the retrying

        group = ReentrantCallbackGroup()  # buffers are locked; an episode never waits behind frames
        # Reliable: the logger needs the very frame a trial used, and best effort loses about a third of
        # the 900 kB frames across processes here (one lost UDP fragment loses the frame).
        frames_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        for topic, kind in (
            (COLOR_TOPIC, Image),
            (DEPTH_TOPIC, Image),
            (INFO_TOPIC, CameraInfo),
            (SCENE_TOPIC, SceneState),
        ):
            self.create_subscription(kind, topic, self._buffers[topic].add, frames_qos, callback_group=group)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(EpisodeRecord, EPISODE_TOPIC, self._on_episode, reliable, callback_group=group)
        self.logged_pub = self.create_publisher(String, LOGGED_TOPIC, reliable)
        self.create_timer(float(self.get_parameter("retry_period_s").value), self._retry_failed, callback_group=group)
        self.get_logger().info(f"logging episodes to {self.store.root} (next {self.store.next_episode})")

    def _on_episode(self, msg: EpisodeRecord) -> None:
        # Match now: the ring buffers move on while the writer is busy.
        stamp_ns = stamp_to_ns(msg.prediction.header.stamp) or stamp_to_ns(msg.header.stamp)
        found = {topic: buffer.find(stamp_ns, self._tolerance_ns) for topic, buffer in self._buffers.items()}
        deadline = time.monotonic() + self._late_wait_s
        self._writer.submit(self._write, msg, stamp_ns, found, deadline).add_done_callback(self._report_bug)

    def _report_bug(self, future: Future) -> None:
        # Expected failures are handled inside the job; anything else is a bug that must not pass silently.
        exc = future.exception()
        if exc is not None:
            self.get_logger().error(f"episode writer failed: {type(exc).__name__}: {exc}")

    def _write(self, msg: EpisodeRecord, stamp_ns: int, found: dict[str, Any], deadline: float) -> None:
        for topic, buffer in self._buffers.items():  # late ones: waited for here, off the executor
            if found[topic] is None and buffer.latest() is not None:  # a topic nobody publishes is not
                found[topic] = buffer.find(stamp_ns, self._tolerance_ns, wait_s=deadline - time.monotonic())
        if found[INFO_TOPIC] is None:  # intrinsics do not change between frames: the newest will do
            found[INFO_TOPIC] = self._buffers[INFO_TOPIC].latest()
        notes: list[str] = []
        trial = trial_from_msg(msg, stamp_ns)
        frame = CameraFrame(
            color=self._convert(found[COLOR_TOPIC], image_to_numpy, "colour frame", stamp_ns, notes),
            depth=self._convert(found[DEPTH_TOPIC], depth_to_mm, "aligned depth frame", stamp_ns, notes),
            camera_info=self._convert(found[INFO_TOPIC], camera_info_json, "camera info", stamp_ns, notes),
        )
        info = frame.camera_info
        if info is not None and info["stamp_ns"] != stamp_ns:
            notes.append(f"camera info from stamp {info['stamp_ns']}, not {stamp_ns}")
        scene = None if found[SCENE_TOPIC] is None else scene_from_msg(found[SCENE_TOPIC])
        try:
            references = select_references(
                trial, self.reference_source, scene=scene, intrinsics=frame.intrinsics, base_T_camera=self.base_T_camera
            )
        except Exception as exc:  # a reference bug must not cost the trial: log it without references
            references = References(ReferenceSource.NONE, note=f"references failed: {type(exc).__name__}: {exc}")
        self._write_or_queue(PendingWrite(trial, frame, references, notes))

    def _convert(self, msg: Any, convert: Callable[[Any], Any], what: str, stamp_ns: int, notes: list[str]) -> Any:
        if msg is None:
            notes.append(f"no {what} with stamp {stamp_ns} (within {self._tolerance_ns / 1e9:.3f} s) was received")
            return None
        try:
            return convert(msg)
        except ValueError as exc:  # e.g. an encoding the logger does not read: keep the rest of the trial
            notes.append(f"{what} unreadable: {exc}")
            return None

    def _write_to_store(self, job: PendingWrite) -> EpisodeStoreError | None:
        """The one place that writes a trial: write it and announce it. Returns the error if the store
        could not write it (the caller decides what happens to the trial), else None."""
        trial = job.trial
        try:
            entry = self.store.write(trial, job.frame, job.references, job.notes)
        except EpisodeIndexPending as exc:  # on disk already: the store indexes it later, never twice
            self.get_logger().error(f"trial {trial.trial_id} logged, index line pending: {exc}")
            return None
        except EpisodeStoreError as exc:
            return exc
        self.logged_pub.publish(String(data=json.dumps(entry)))
        self.get_logger().info(
            f"episode {entry['episode']} ({trial.trial_id}): success={trial.success} total={entry['rewards']['total']}"
        )
        return None

    def _write_or_queue(self, job: PendingWrite) -> None:
        """Writer thread: a write the store refuses is kept for the retry timer (and destroy_node)."""
        error = self._write_to_store(job)
        if error is not None:
            self.get_logger().error(f"trial {job.trial.trial_id} NOT logged yet (retrying): {error}")
            with self._failed_lock:
                self._failed.append(job)

    def _retry_failed(self) -> None:
        with self._failed_lock:
            # Submitted under the lock, and not at all once shutting down: a job submitted to a writer that
            # has been shut down would raise, and the job would be lost.
            if self._shutting_down:
                return
            pending, self._failed = list(self._failed), deque()
            for job in pending:
                self._writer.submit(self._write_or_queue, job).add_done_callback(self._report_bug)

    def destroy_node(self) -> None:
        with self._failed_lock:
            self._shutting_down = True
        self._writer.shutdown(wait=True)  # finish the episodes already received
        # The writer is idle now: retry what is still failing once more, here and in order, and save what
        # the store still refuses elsewhere: the episode log never loses a finished trial.
        with self._failed_lock:
            unlogged, self._failed = list(self._failed), deque()
        for job in unlogged:
            try:
                error: Exception | None = self._write_to_store(job)
            except Exception as exc:  # a bug must not cost this trial, nor the ones after it
                error = exc
            if error is not None:
                self._save_unlogged(job, error)
        self.store.close()
        super().destroy_node()

    def _save_unlogged(self, job: PendingWrite, error: Exception) -> None:
        """Save a trial the store could not write to `unlogged_trials_dir()`, else into the log output.

        The file is the episode's own episode.json document (`episodes.episode_document`; no pixels), so
        `episodes.trial_from_document` and `References.from_json` read it back for re-logging, plus the
        `error` and the `log_dir` it was meant for."""
        trial_id = job.trial.trial_id
        document: dict[str, Any] | None = None
        try:
            document = episode_document(
                "", job.trial, CameraFrame(camera_info=job.frame.camera_info), job.references, list(job.notes)
            )
            document.update(episode=None, log_dir=str(self.store.root), error=f"{type(error).__name__}: {error}")
            directory = unlogged_trials_dir()
            directory.mkdir(parents=True, exist_ok=True)
            path = _unlogged_trial_path(directory, trial_id)
            write_json_atomic(path, document)
        except Exception as exc:  # nowhere left to write: the log output is the last copy of the trial
            if document is None:
                content = f"{job.trial!r} notes={job.notes!r}"
            else:
                content = json.dumps(document, ensure_ascii=False, default=str)
            self.get_logger().error(
                f"trial {trial_id} NOT logged ({error}) and not saved ({type(exc).__name__}: {exc}); "
                f"the trial: {content}"
            )
            return
        self.get_logger().error(f"trial {trial_id} NOT logged ({error}); saved to {path} for re-logging")


def main(args: list[str] | None = None) -> None:
    # An unwritable log directory is fatal at start: better no logger than trials that are never logged.
    sys.exit(spin_nodes(lambda: [RewardLoggerNode()], args, startup_errors=(EpisodeStoreError, ValueError)))


if __name__ == "__main__":
    main()
