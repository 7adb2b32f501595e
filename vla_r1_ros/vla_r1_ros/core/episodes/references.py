"""Reference answers and rewards of a trial (pure functions).

The rewards of an episode are `core.rewards.score_completion` of the model's raw text per task against
a reference answer — the very function GRPO training uses. Where the reference comes from is explicit
(`ReferenceSource`) and recorded in the episode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from vla_r1_ros.core import prompts, rewards
from vla_r1_ros.core.episodes.record import TrialLog
from vla_r1_ros.core.geometry import CameraIntrinsics, RigidTransform
from vla_r1_ros.core.scene import (
    Scene,
    reference_box,
    reference_waypoints,
    resolve_target,
)


class ReferenceSource(StrEnum):
    """Where the reference answers that rewards are measured against come from."""

    AUTO = "auto"  # SIMULATOR when the frame has a scene, else NONE
    SIMULATOR = "simulator"  # ground truth: target's segmentation box, ideal surface path
    # Written by older loggers on a real robot: the box the trial acted on and the path it drove, i.e.
    # the trial's own answer. Read, never made, and never a reference (core.labels).
    SUCCESSFUL_TRIAL = "successful_trial"
    OPERATOR = "operator"  # boxes / paths an operator drew (labels.json sidecar)
    NONE = "none"  # no reference: only the format reward and the outcome are known


@dataclass(frozen=True)
class References:
    source: ReferenceSource
    box: tuple[float, float, float, float] | None = None  # normalized centre box
    waypoints: tuple[tuple[float, float], ...] | None = None  # normalized [x, y]
    target: str | None = None  # scene object name (simulator)
    note: str = ""  # why a reference is missing

    def answer(self, task: str) -> Any:
        """The reference output for a task (a box or a waypoint list), or None."""
        return self.box if task == prompts.AFFORDANCE else self.waypoints

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = str(self.source)
        data["box"] = None if self.box is None else list(self.box)
        data["waypoints"] = None if self.waypoints is None else [list(p) for p in self.waypoints]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> References:
        box, waypoints = data.get("box"), data.get("waypoints")
        return cls(
            source=ReferenceSource(data["source"]),
            box=None if box is None else tuple(float(v) for v in box),
            waypoints=None if waypoints is None else tuple((float(x), float(y)) for x, y in waypoints),
            target=data.get("target"),
            note=data.get("note", ""),
        )


NO_GROUND_TRUTH = "no ground truth on a real robot (the trial's own answer is no reference): label it (vla-r1 label)"


def _as_pairs(array: np.ndarray) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in np.asarray(array, dtype=float).reshape(-1, 2))


def select_references(
    record: TrialLog,
    source: ReferenceSource | str = ReferenceSource.AUTO,
    *,
    scene: Scene | None = None,
    intrinsics: CameraIntrinsics | None = None,
    base_T_camera: RigidTransform | None = None,
) -> References:
    """The reference answers for one trial.

    - SIMULATOR (needs the frame's `scene`): the instruction's target object's segmentation box, and
      its ideal surface path to the tray projected into the image (`core.scene`).
    - AUTO: SIMULATOR when a scene is available, else NONE: a real robot has no ground truth, and the
      trial's own answer (the box it acted on, the path it drove) is never its own reference — its task
      rewards are None until an operator labels the episode (`vla-r1 label`).
    A reference that cannot be made is None with a `note`, never a guess.
    """
    source = ReferenceSource(source)
    if source is ReferenceSource.AUTO:
        if scene is None:
            return References(ReferenceSource.NONE, note=NO_GROUND_TRUTH)
        source = ReferenceSource.SIMULATOR
    if source is ReferenceSource.SIMULATOR:
        return _simulator_references(record, scene, intrinsics, base_T_camera)
    if source is ReferenceSource.NONE:
        return References(ReferenceSource.NONE, note="reference source 'none' requested")
    raise ValueError(f"{source} references are not made from a trial: simulator ground truth or an operator's labels")


def _simulator_references(
    record: TrialLog,
    scene: Scene | None,
    intrinsics: CameraIntrinsics | None,
    base_T_camera: RigidTransform | None,
) -> References:
    if scene is None or intrinsics is None or base_T_camera is None:
        return References(ReferenceSource.NONE, note="simulator reference needs the scene, camera info and extrinsics")
    target = resolve_target(record.instruction, scene.objects)
    if target is None:
        return References(ReferenceSource.NONE, note=f"instruction names no unique object: {record.instruction!r}")
    notes = []
    box = None
    if target.visible and target.bbox_px is not None:
        box = tuple(float(v) for v in reference_box(target, intrinsics))
    else:
        notes.append(f"{target.name} is not visible: no reference box")
    waypoints = _as_pairs(reference_waypoints(scene, target, intrinsics, base_T_camera))
    return References(ReferenceSource.SIMULATOR, box, waypoints, target=target.name, note="; ".join(notes))


def episode_rewards(record: TrialLog, references: References) -> dict[str, Any]:
    """Format, region, trajectory and total rewards of a trial, by `core.rewards.score_completion`.

    Per task: `format` (0/1), `task` (GIoU- or Fréchet-based score vs the reference, None without a
    reference) and `total` (0.9 · task + 0.1 · format, None without a reference). Episode-level:
    `format` is the mean over the answered tasks, `region` / `trajectory` the task scores, `total` the
    mean of the per-task totals that have a reference, `success` the trial's outcome.
    """
    per_task: dict[str, dict[str, float | None]] = {}
    for task in record.tasks:
        text = record.raw_texts.get(task, "")
        reference = references.answer(task)
        if reference is None:
            per_task[task] = {"format": float(rewards.format_reward(text)), "task": None, "total": None}
            continue
        try:
            breakdown = rewards.score_completion(task, text, prompts.format_answer("", reference))
        except ValueError as exc:  # an unusable reference (a non-finite coordinate): recorded, not fatal
            per_task[task] = {"format": float(rewards.format_reward(text)), "task": None, "total": None}
            per_task[task]["error"] = f"reference not scorable: {exc}"
            continue
        per_task[task] = {
            "format": float(breakdown.format),
            "task": float(breakdown.task_score),
            "total": float(breakdown.score),
        }
    totals = [scores["total"] for scores in per_task.values() if scores["total"] is not None]
    formats = [scores["format"] for scores in per_task.values()]
    return {
        "format": float(np.mean(formats)) if formats else None,
        "region": per_task.get(prompts.AFFORDANCE, {}).get("task"),
        "trajectory": per_task.get(prompts.TRAJECTORY, {}).get("task"),
        "total": float(np.mean(totals)) if totals else None,
        "success": bool(record.success),
        "per_task": per_task,
    }
