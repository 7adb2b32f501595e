"""The camera's verdict on a trial, from the frame sets before and after it: the judge of a real arm's
unattended night (`judge_trial`). It never reads the simulator's state nor the model's answer.

The semantics are the simulator's judge's (`core.outcomes.judge_sim_placement`): success only when the
object the instruction names rests in the tray (others there too do not undo it); `wrong_object` when
only others do; otherwise `grasp` when the named object still stands where it stood before, `place`
when it left its place and is not in the tray (dropped on the table, or seen nowhere: off the table).
While the gripper is still closed on something — its fingers stopped apart, neither closed on nothing
(`holding_width_m` or less) nor open (within `holding_width_m` of `gripper_opening_m`) — the named object
is not resting in the tray, whatever the camera sees there.

A false success is the worst error it can make, so whatever it cannot tell is "cannot judge" (judged
False, the reason in the message: the trial goes to the operator): no after frame or a stale one, the
instruction naming no registered object, the named object not recognised before the trial, the tray
not where the registry has it, depth holes over the tray, an object in the tray that matches no
registered object, and any verdict less confident than `min_confidence`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vla_r1_ros.core.object_registry import MatchSettings, ObjectRegistry, RegisteredObject
from vla_r1_ros.core.outcomes import FailureStage
from vla_r1_ros.core.tabletop import Blob, RgbdView, TabletopSettings, measure_tray_in, segment_tabletop
from vla_r1_ros.core.tray import TrayNotFound, TrayPose, TrayTolerance, compare_tray


@dataclass(frozen=True)
class JudgeSettings:
    """`vision_judge:` of config/workspace.yaml (the tray tolerances are `doctor:`'s)."""

    segmentation: TabletopSettings
    match: MatchSettings
    max_frame_age_s: float  # an after frame older than this when judged is stale
    min_confidence: float  # below it the verdict goes to the operator
    holding_width_m: float  # fingers further apart than this after the trial still hold something
    moved_m: float  # the named object within this of where it stood before has not been picked
    min_tray_depth_fill: float  # fraction of the tray's pixels with depth
    tray_tolerance: TrayTolerance  # the doctor's and the planning node's

    @classmethod
    def from_config(cls, workspace_config: Mapping[str, Any], camera_config: Mapping[str, Any]) -> JudgeSettings:
        judge = workspace_config["vision_judge"]
        return cls(
            segmentation=TabletopSettings.from_config(workspace_config, camera_config),
            match=MatchSettings.from_config(workspace_config),
            max_frame_age_s=float(judge["max_frame_age_s"]),
            min_confidence=float(judge["min_confidence"]),
            holding_width_m=float(judge["holding_width_m"]),
            moved_m=float(judge["moved_m"]),
            min_tray_depth_fill=float(judge["min_tray_depth_fill"]),
            tray_tolerance=TrayTolerance.from_config(workspace_config),
        )


@dataclass(frozen=True)
class VisionVerdict:
    judged: bool  # False = "cannot judge" (reason in message): the trial goes to the operator
    success: bool
    failure_stage: str  # "" or a FailureStage value: wrong_object, place, grasp
    confidence: float  # 0..1
    message: str
    in_tray: tuple[str, ...] = ()  # registered names seen resting in the tray after
    evidence: dict[str, np.ndarray] = field(default_factory=dict)  # the masks it used, bool (H, W)

    def to_json(self) -> dict[str, Any]:
        return {
            "judged": self.judged,
            "success": self.success,
            "failure_stage": self.failure_stage,
            "confidence": self.confidence,
            "message": self.message,
            "in_tray": list(self.in_tray),
        }


def cannot_judge(reason: str, confidence: float = 0.0, **evidence: np.ndarray) -> VisionVerdict:
    return VisionVerdict(False, False, "", confidence, f"cannot judge: {reason}", evidence=evidence)


class _Refusal(Exception):
    """Why a frame set cannot be judged (becomes `cannot_judge`)."""


def tray_pixels(view: RgbdView, tray: TrayPose) -> np.ndarray:
    """(H, W) bool: the pixels the tray covers, its footprint from the table up to its rim."""
    c, s = np.cos(tray.yaw_rad), np.sin(tray.yaw_rad)
    half = np.asarray(tray.size[:2], float) / 2
    corners = np.array([[sx * half[0], sy * half[1]] for sx in (-1, 1) for sy in (-1, 1)]) @ np.array([[c, s], [-s, c]])
    base_z = float(tray.centre[2] - tray.size[2] / 2)
    points = [[*(tray.centre[:2] + xy), base_z + dz] for xy in corners for dz in (0.0, float(tray.size[2]))]
    pixels = view.intrinsics.project(view.base_T_camera.inverse().apply(np.array(points)))
    mask = np.zeros(view.depth_m.shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pixels).astype(np.int32)), 1)
    return mask.astype(bool)


def measured_tray(view: RgbdView, registry: ObjectRegistry, settings: JudgeSettings) -> TrayPose:
    """The tray as the view shows it; _Refusal when it is not within tolerance of the registered pose or
    depth is missing over it."""
    points = view.base_points(settings.segmentation.lift)
    on_tray = tray_pixels(view, registry.tray)
    fill = float(np.all(np.isfinite(points[on_tray]), axis=-1).mean()) if on_tray.any() else 0.0
    if fill < settings.min_tray_depth_fill:
        raise _Refusal(f"depth on {fill:.0%} of the tray (< {settings.min_tray_depth_fill:.0%})")
    try:
        tray = measure_tray_in(view, registry.tray, registry.table_z, settings.segmentation.lift)
    except TrayNotFound as exc:
        raise _Refusal(f"no tray near the registered one: {exc}") from None
    comparison, tolerance = compare_tray(tray, registry.tray, settings.tray_tolerance), settings.tray_tolerance
    if not comparison.within:
        raise _Refusal(
            f"the tray is {comparison.offset_m * 1000:.0f} mm and {comparison.turned_deg:.0f} deg from where it was "
            f"registered (tolerance {tolerance.centre_m * 1000:.0f} mm, {tolerance.yaw_deg:.0f} deg)"
        )
    return tray


def _named(
    blobs: tuple[Blob, ...], registry: ObjectRegistry, settings: MatchSettings
) -> list[tuple[Blob, RegisteredObject | None, float]]:
    return [(blob, *registry.match(blob, settings)) for blob in blobs]


def _frames_problem(before: RgbdView | None, after: RgbdView | None, max_age_s: float, now_ns: int) -> str:
    if before is None or after is None:
        return f"no {'before' if before is None else 'after'} frame set"
    if after.stamp_ns <= before.stamp_ns:
        return "the after frame is not newer than the before frame (stale)"
    age_s = (now_ns - after.stamp_ns) / 1e9
    if age_s > max_age_s:
        return f"the after frame is {age_s:.1f} s old (> {max_age_s:.1f} s): stale"
    return ""


def judge_trial(
    before: RgbdView | None,
    after: RgbdView | None,
    registry: ObjectRegistry,
    instruction: str,
    gripper_width_m: float,
    settings: JudgeSettings,
    now_ns: int | None = None,
    *,
    gripper_opening_m: float,
) -> VisionVerdict:
    """The camera's verdict on one trial (module docstring); `now_ns` (default: now) dates the after frame;
    `gripper_opening_m`: how wide the executor's gripper opens (an open gripper holds nothing)."""
    problem = _frames_problem(before, after, settings.max_frame_age_s, time.time_ns() if now_ns is None else now_ns)
    if problem:
        return cannot_judge(problem)
    assert before is not None and after is not None
    target = registry.resolve(instruction)
    if target is None:
        return cannot_judge(f"the instruction names no single registered object: {instruction!r}")
    try:
        tray = measured_tray(after, registry, settings)
    except _Refusal as refusal:
        return cannot_judge(f"the after frame: {refusal}")
    # The tray as it stands after the trial, for both frames: a tray knocked during the trial is off the
    # registered pose in the after frame (refused above), and measuring it twice costs seconds.
    seen_before = segment_tabletop(before, registry.table_z, tray, settings.segmentation)
    seen_after = segment_tabletop(after, registry.table_z, tray, settings.segmentation)

    targets_before = [(b, c) for b, obj, c in _named(seen_before.on_table, registry, settings.match) if obj is target]
    if len(targets_before) != 1:
        return cannot_judge(f"{target.name} is seen {len(targets_before)} times on the table before the trial")
    start, start_confidence = targets_before[0]
    evidence = {"target_before": start.mask}

    tray_matches = _named(seen_after.in_tray, registry, settings.match)
    evidence["tray_new"] = np.any([np.zeros(after.depth_m.shape, bool), *(b.mask for b in seen_after.in_tray)], axis=0)
    for blob, obj, _ in tray_matches:
        if obj is None:
            where = f"({blob.centroid[0]:.2f}, {blob.centroid[1]:.2f})"
            return cannot_judge(f"the object in the tray at {where} m matches no registered object", **evidence)
    # Then the named object does not rest in the tray: the fingers stand apart on something.
    held = settings.holding_width_m < gripper_width_m < gripper_opening_m - settings.holding_width_m
    in_tray = tuple(sorted({obj.name for _, obj, _ in tray_matches if obj is not None}))
    resting = tuple(name for name in in_tray if not (held and name == target.name))
    confidences = [start_confidence, *(c for _, _, c in tray_matches)]
    holding_note = f"; the gripper is still {gripper_width_m * 1000:.0f} mm apart on something" if held else ""

    after_table = [(b, c) for b, obj, c in _named(seen_after.on_table, registry, settings.match) if obj is target]
    if after_table:
        evidence["target_after"] = after_table[0][0].mask
    if target.name in in_tray and after_table:
        return cannot_judge(f"{target.name} is seen both in the tray and on the table", **evidence)
    if target.name in resting:
        others = [name for name in resting if name != target.name]
        extra = f" (also in the tray: {', '.join(others)})" if others else ""
        verdict = (True, "", f"{target.name} placed in the tray{extra}")
    elif resting:
        verdict = (
            False,
            FailureStage.WRONG_OBJECT.value,
            f"the instruction names {target.name}, but the tray holds {', '.join(resting)}{holding_note}",
        )
    else:
        stayed = [
            (b, c) for b, c in after_table if np.linalg.norm(b.centroid[:2] - start.centroid[:2]) <= settings.moved_m
        ]
        if stayed:
            confidences.append(stayed[0][1])
            verdict = (False, FailureStage.GRASP.value, f"{target.name} still stands where it stood{holding_note}")
        elif after_table:
            confidences.append(after_table[0][1])
            where = f"({after_table[0][0].centroid[0]:.2f}, {after_table[0][0].centroid[1]:.2f})"
            verdict = (False, FailureStage.PLACE.value, f"{target.name} is on the table at {where} m, not in the tray")
        elif target.name in in_tray:
            verdict = (False, FailureStage.PLACE.value, f"{target.name} is in the tray, not resting{holding_note}")
        else:
            verdict = (False, FailureStage.PLACE.value, f"{target.name} is seen nowhere: not in the tray{holding_note}")
    confidence = float(min(confidences))
    success, stage, message = verdict
    if confidence < settings.min_confidence:
        return cannot_judge(
            f"confidence {confidence:.2f} < {settings.min_confidence:.2f} in: {message}", confidence, **evidence
        )
    return VisionVerdict(True, success, stage, confidence, message, in_tray, evidence)
