"""PickPlacePlan -> vla_r1_interfaces/ManipulationPlan -> episode JSON, and the RViz markers of a plan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose
from std_msgs.msg import ColorRGBA
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray
from vla_r1_interfaces.msg import ManipulationPlan

from vla_r1_ros.core.planning import PickPlacePlan, SafetyLimits, ValidatedPlan
from vla_r1_ros.core.trial_flow import TrialRecord
from vla_r1_ros.nodes.conversions import ns_to_stamp, point_msg, pose_msg

MARKER_NAMESPACE = "vla_r1_plan"


def plan_msg(
    plan: PickPlacePlan | None,
    *,
    trial_id: str,
    stamp: Time,
    frame_id: str,
    validated: ValidatedPlan | None = None,
    failed_check: str = "",
    reason: str = "",
    grasps_tried: Sequence[str] = (),
) -> ManipulationPlan:
    """The message for a plan. `feasible` is true only with a ValidatedPlan (its joint path is included);
    without a plan (lifting failed) only the failure fields are set."""
    msg = ManipulationPlan()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.trial_id = trial_id
    msg.feasible = validated is not None and not failed_check
    msg.failed_check = failed_check
    msg.reason = reason
    msg.grasps_tried = list(grasps_tried)
    if plan is not None:
        msg.pre_grasp_pose = pose_msg(plan.pre_grasp)
        msg.grasp_pose = pose_msg(plan.grasp)
        msg.grasp_surface_point = point_msg(plan.grasp_surface_point)
        msg.carry_waypoints = [pose_msg(p) for p in plan.carry_waypoints]
        msg.place_pose = pose_msg(plan.place)
        msg.speed_scaling = float(plan.speed_scaling)
    if validated is not None:
        trajectory = JointTrajectory()
        trajectory.header.frame_id = frame_id
        trajectory.joint_names = list(validated.joint_names)
        # Positions only: timing is the executor's (it scales to the arm's velocity limits).
        trajectory.points = [JointTrajectoryPoint(positions=[float(v) for v in q]) for q in validated.joint_path()]
        msg.joint_trajectory = trajectory
    return msg


def trial_plan_msg(record: TrialRecord, frame_id: str, now: Time) -> ManipulationPlan:
    """A trial's plan with its fate: the failed check and reason when lifting or validation refused it,
    stamped with the frame set the trial acted on (`now` when it had none)."""
    grasps_tried: tuple[str, ...] = ()
    if record.lift_error is not None:
        check, reason = "lift", str(record.lift_error)
    elif record.rejection is not None:
        check, reason = record.rejection.check, record.rejection.reason
        grasps_tried = record.rejection.grasps_tried
    else:
        check, reason = "", ""
        grasps_tried = record.validated.grasps_tried if record.validated is not None else ()
    return plan_msg(
        record.plan,
        trial_id=record.trial_id,
        stamp=ns_to_stamp(record.frames.stamp_ns) if record.frames else now,
        frame_id=frame_id,
        validated=record.validated,
        failed_check=check,
        reason=reason,
        grasps_tried=grasps_tried,
    )


def _pose_json(pose: Pose) -> dict[str, list[float]]:
    p, o = pose.position, pose.orientation
    return {"position": [p.x, p.y, p.z], "orientation": [o.x, o.y, o.z, o.w]}


def plan_json(msg: ManipulationPlan) -> dict[str, Any]:
    """The plan as episode JSON; poses only when the plan carries any (lifting failed: it carries none)."""
    data: dict[str, Any] = {"feasible": bool(msg.feasible), "failed_check": msg.failed_check, "reason": msg.reason}
    if msg.grasps_tried:
        data["grasps_tried"] = list(msg.grasps_tried)
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


def _marker(marker_id: int, kind: int, frame_id: str, stamp: Time, rgba: tuple[float, ...]) -> Marker:
    m = Marker()
    m.header.frame_id = frame_id
    m.header.stamp = stamp
    m.ns = MARKER_NAMESPACE
    m.id = marker_id
    m.type = kind
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
    return m


def _workspace_edges(limits: SafetyLimits) -> list[Point]:
    low, high = np.array(limits.workspace_min), np.array(limits.workspace_max)
    corners = [np.where([i & 1, i & 2, i & 4], high, low) for i in range(8)]
    points = []
    for i in range(8):
        for j in range(i + 1, 8):
            if bin(i ^ j).count("1") == 1:  # an edge joins corners that differ in one coordinate
                points += [point_msg(corners[i]), point_msg(corners[j])]
    return points


def plan_markers(
    plan: PickPlacePlan | None, limits: SafetyLimits, *, frame_id: str, stamp: Time, feasible: bool
) -> MarkerArray:
    """DELETEALL, then: the workspace box; with a plan, the grasp frame axes (x red, y green, z blue),
    the TCP path through every plan pose (green when feasible, red when rejected) and the surface point."""
    clear = Marker()
    clear.header.frame_id = frame_id
    clear.ns = MARKER_NAMESPACE
    clear.action = Marker.DELETEALL
    markers = [clear]

    box = _marker(0, Marker.LINE_LIST, frame_id, stamp, (0.6, 0.6, 0.6, 0.8))
    box.scale.x = 0.004
    box.points = _workspace_edges(limits)
    markers.append(box)
    if plan is not None:
        origin = plan.grasp.translation
        for axis in range(3):
            arrow = _marker(1 + axis, Marker.ARROW, frame_id, stamp, (*(float(axis == k) for k in range(3)), 1.0))
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.008, 0.016, 0.02
            tip = origin + plan.grasp.rotation.apply(np.eye(3)[axis]) * 0.08
            arrow.points = [point_msg(origin), point_msg(tip)]
            markers.append(arrow)
        path = _marker(
            4, Marker.LINE_STRIP, frame_id, stamp, (0.1, 0.9, 0.2, 1.0) if feasible else (0.95, 0.1, 0.1, 1.0)
        )
        path.scale.x = 0.006
        path.points = [point_msg(pose.translation) for _, pose in plan.key_poses()]
        markers.append(path)
        surface = _marker(5, Marker.SPHERE, frame_id, stamp, (1.0, 0.8, 0.0, 1.0))
        surface.scale.x = surface.scale.y = surface.scale.z = 0.015
        surface.pose.position = point_msg(plan.grasp_surface_point)
        markers.append(surface)
    return MarkerArray(markers=markers)
