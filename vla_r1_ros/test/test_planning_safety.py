"""Pick-and-place planning and its safety checks: each rule rejects a crafted bad plan by name; a good
plan passes; nothing but the validator can make a ValidatedPlan, and executors run nothing else."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest

from vla_r1_ros.core.collision import Collision
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.lifting import GraspSurface
from vla_r1_ros.core.planning import (
    JointLimits,
    PlanningParams,
    PlanRejected,
    SafetyLimits,
    ValidatedPlan,
    grasp_candidates,
    grasp_yaw,
    held_object_box,
    pick_waypoint_index,
    plan_pick_and_place,
    top_down_orientation,
    validate_candidates,
    validate_either_way,
    validate_plan,
)
from vla_r1_ros.executors.base import require_validated

JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
LIMITS = JointLimits(np.full(7, -3.0), np.full(7, 3.0), np.full(7, 2.0))
HOME = RigidTransform(top_down_orientation(0.0), np.array([0.31, 0.0, 0.49]))


def smooth_ik(position, quat_xyzw, seed=None):
    """A stand-in arm whose joints vary smoothly with the TCP pose (reachable everywhere)."""
    x, y, z = position
    yaw = np.arctan2(*(RigidTransform.from_pose(position, quat_xyzw).rotation.apply([1.0, 0.0, 0.0])[[1, 0]]))
    return np.array([np.arctan2(y, x), x, y, z, 0.0, 1.0, yaw])


START_JOINTS = smooth_ik(HOME.translation, HOME.quat_xyzw)


def surface(point=(0.5, 0.0, 0.05), height=0.05, axis=(1.0, 0.0, 0.0)) -> GraspSurface:
    return GraspSurface(
        point=np.array(point, float),
        up=np.array([0.0, 0.0, 1.0]),
        axis=np.array(axis, float),
        height_m=height,
        length_m=0.05,
        width_m=0.05,
        pixels=500,
    )


def waypoints(end=(0.45, 0.30, 0.0), start=(0.5, 0.0, 0.05), n=4) -> np.ndarray:
    return np.linspace(start, end, n)


@pytest.fixture(scope="module")
def params() -> PlanningParams:
    return PlanningParams.from_config(load_config("workspace"))


@pytest.fixture(scope="module")
def limits() -> SafetyLimits:
    return SafetyLimits.from_config(load_config("workspace"))


GRIPPER_OPENING_M = 0.08  # a Franka Hand


def validate(plan, limits, ik=smooth_ik, start=HOME):
    q0 = ik(start.translation, start.quat_xyzw)
    return validate_plan(plan, limits, ik, LIMITS, JOINTS, q0, start, gripper_opening_m=GRIPPER_OPENING_M)


def rejected_check(plan, limits, **kwargs) -> str:
    with pytest.raises(PlanRejected) as info:
        validate(plan, limits, **kwargs)
    assert info.value.reason
    return info.value.check


def test_good_plan_passes_with_a_checked_joint_path(params, limits):
    plan = plan_pick_and_place(surface(), waypoints(), params)
    validated = validate(plan, limits)
    assert isinstance(validated, ValidatedPlan)
    names = [step.name for step in validated.steps]
    assert names == ["approach", "descend", "grasp", "lift", "carry", "lower", "release", "retreat"]
    path = validated.joint_path()
    assert path.shape[1] == 7 and len(path) > 20  # sampled every 2 cm, not just the key poses
    assert np.max(np.abs(np.diff(path, axis=0))) <= limits.max_joint_step_rad


def test_plan_geometry(params):
    grasp = surface(point=(0.5, 0.1, 0.05), height=0.05, axis=(0.0, 1.0, 0.0))
    plan = plan_pick_and_place(grasp, waypoints(start=(0.5, 0.1, 0.05)), params)
    # Grasp 2 cm below the top, top-down (TCP z points down), fingers closing across the long axis (y).
    np.testing.assert_allclose(plan.grasp.translation, [0.5, 0.1, 0.03])
    np.testing.assert_allclose(plan.grasp.rotation.apply([0, 0, 1]), [0, 0, -1], atol=1e-9)
    np.testing.assert_allclose(abs(plan.grasp.rotation.apply([0, 1, 0])[0]), 1.0, atol=1e-9)
    np.testing.assert_allclose(plan.pre_grasp.translation, [0.5, 0.1, 0.13])
    # Carry waypoints 15 cm above their surface; release with the object's bottom 1.5 cm above the last one.
    np.testing.assert_allclose(plan.carry_waypoints[-1].translation, [0.45, 0.30, 0.15])
    np.testing.assert_allclose(plan.place.translation, [0.45, 0.30, 0.03 + 0.015])
    assert plan.lift.translation[2] == pytest.approx(max(0.13, plan.carry_waypoints[0].translation[2]))


GRIPPER_SEEN_AT = (0.33, 0.02, 0.42)  # where a ShareRobot path's first pixel lifts to: the gripper itself


def test_a_path_from_the_gripper_and_a_path_from_the_object_give_the_same_plan(params):
    carry_path = waypoints()
    sharerobot_path = np.vstack([GRIPPER_SEEN_AT, carry_path])
    carry, sharerobot = (plan_pick_and_place(surface(), path, params) for path in (carry_path, sharerobot_path))
    assert pick_waypoint_index(carry_path, surface().point) == 0
    assert pick_waypoint_index(sharerobot_path, surface().point) == 1
    for a, b in zip(carry.key_poses(), sharerobot.key_poses(), strict=True):
        assert a[0] == b[0]
        np.testing.assert_allclose(a[1].translation, b[1].translation)
    # The transport is what follows the pick waypoint; the place is under the path's end.
    np.testing.assert_allclose([p.translation for p in carry.carry_waypoints], carry_path[1:] + np.array([0, 0, 0.15]))
    np.testing.assert_allclose(carry.place.translation[:2], carry_path[-1, :2])


def test_the_pick_waypoint_is_the_nearest_in_3d_not_the_first(params):
    # A gripper hovering right above the object: nearest in the image, 30 cm away in 3-D.
    above = np.array([0.5, 0.0, 0.35])
    off_object = np.array([0.51, 0.01, 0.05])  # the model's object waypoint, a little off the top centre
    path = np.vstack([above, off_object, waypoints()[1:]])
    plan = plan_pick_and_place(surface(), path, params)
    assert len(plan.carry_waypoints) == len(path) - 2
    np.testing.assert_allclose(plan.carry_waypoints[0].translation, waypoints()[1] + np.array([0, 0, 0.15]))


def test_a_path_that_ends_at_the_pick_point_has_nowhere_to_place(params):
    to_the_object = np.array([GRIPPER_SEEN_AT, [0.45, 0.05, 0.2], [0.5, 0.0, 0.05]])  # "trajectory to the object"
    with pytest.raises(PlanRejected, match="ends at the pick point") as info:
        plan_pick_and_place(surface(), to_the_object, params)
    assert info.value.check == "lift"


def test_grasp_yaw_is_wrapped_to_the_smaller_wrist_turn():
    for angle in np.linspace(-np.pi, np.pi, 37):
        yaw = grasp_yaw(np.array([np.cos(angle), np.sin(angle), 0.0]))
        assert -np.pi / 2 < yaw <= np.pi / 2 + 1e-12
        assert np.isclose(np.cos(2 * (yaw - angle)), 1.0)  # same axis, modulo pi


def test_workspace_rule(params, limits):
    plan = plan_pick_and_place(surface(), waypoints(end=(0.6, 0.7, 0.0)), params)  # places beyond y = 0.5
    assert rejected_check(plan, limits) == "workspace"


def test_workspace_rule_covers_the_approach_from_where_the_arm_is(params, limits):
    plan = plan_pick_and_place(surface(), waypoints(), params)
    outside = RigidTransform(HOME.rotation, np.array([0.31, 0.0, 0.95]))
    assert rejected_check(plan, limits, start=outside) == "workspace"


def test_clearance_rule(params, limits):
    flat = surface(point=(0.5, 0.0, 0.012), height=0.012)  # a 1.2 cm object: TCP 6 mm above the table
    plan = plan_pick_and_place(flat, waypoints(start=(0.5, 0.0, 0.012)), params)
    assert rejected_check(plan, limits) == "clearance"


def test_step_rule_catches_a_wild_waypoint(params, limits):
    wild = np.array([[0.5, 0.0, 0.05], [0.45, -0.45, 0.0], [0.45, 0.30, 0.0]])
    plan = plan_pick_and_place(surface(), wild, params)
    assert rejected_check(plan, limits) == "step"


def test_step_rule_catches_an_ik_branch_flip(params, limits):
    def flipping_ik(position, quat, seed=None):
        q = smooth_ik(position, quat)
        q[0] += 1.0 if position[1] > 0.15 else 0.0  # the elbow flips half-way along the carry
        return q

    plan = plan_pick_and_place(surface(), waypoints(), params)
    assert rejected_check(plan, limits, ik=flipping_ik) == "step"


def test_speed_rule(params, limits):
    plan = plan_pick_and_place(surface(), waypoints(), params)
    for speed in (0.0, -0.1, limits.max_speed_scaling + 0.1, float("nan")):
        assert rejected_check(replace(plan, speed_scaling=speed), limits) == "speed"


def test_grasp_width_rule(params, limits):
    def object_of_width(width_m: float):
        return plan_pick_and_place(replace(surface(), width_m=width_m), waypoints(), params)

    widest = GRIPPER_OPENING_M - 2 * limits.min_finger_clearance_m  # 70 mm with the config's 5 mm
    validate(object_of_width(widest), limits)
    assert object_of_width(0.05).grasp_width_m == 0.05  # the lifted footprint is what the check sees
    for width in (widest + 0.001, 0.12, 0.0, float("nan")):
        assert rejected_check(object_of_width(width), limits) == "grasp_width"
    with pytest.raises(PlanRejected, match="71 mm across the grasp; the gripper opens 80 mm"):
        validate(object_of_width(0.071), limits)


def test_reachability_rule(params, limits):
    def short_arm(position, quat, seed=None):
        return None if np.linalg.norm(position[:2]) > 0.52 else smooth_ik(position, quat)

    plan = plan_pick_and_place(surface(), waypoints(), params)
    assert rejected_check(plan, limits, ik=short_arm) == "reachability"


def test_joint_limit_rule(params, limits):
    def wrist_at_its_stop(position, quat, seed=None):
        q = smooth_ik(position, quat)
        q[6] = 2.99  # within the hard limit (3.0) but inside the safety margin
        return q

    plan = plan_pick_and_place(surface(), waypoints(), params)
    assert rejected_check(plan, limits, ik=wrist_at_its_stop) == "joint_limits"


def test_no_waypoints_means_no_plan(params):
    with pytest.raises(PlanRejected) as info:
        plan_pick_and_place(surface(), np.zeros((0, 3)), params)
    assert info.value.check == "lift"


def test_only_the_validator_makes_a_validated_plan(params, limits):
    plan = plan_pick_and_place(surface(), waypoints(), params)
    with pytest.raises(TypeError):
        require_validated(plan)  # what every executor calls first
    with pytest.raises(TypeError):  # built by hand
        require_validated(
            ValidatedPlan(plan=plan, joint_names=JOINTS, start_joints=START_JOINTS, steps=(), limits=SafetyLimits())
        )
    validated = validate(plan, limits)
    assert require_validated(validated).plan is plan
    with pytest.raises(TypeError):  # a copy with other steps is not what the validator checked
        require_validated(dataclasses.replace(validated, steps=()))


def test_half_turned_grasp_is_tried_when_the_wrist_runs_out(params, limits):
    def wrist_only_one_way(position, quat, seed=None):
        # Near the table this arm's wrist needs 3.0 rad for yaw 0, 0 rad for the half-turned yaw.
        q = smooth_ik(position, quat)
        q[6] = 1.5 + 1.5 * np.cos(q[6]) * np.clip((0.3 - position[2]) / 0.1, 0.0, 1.0)
        return q

    plan = plan_pick_and_place(surface(), waypoints(), params)
    assert rejected_check(plan, limits, ik=wrist_only_one_way) == "joint_limits"
    args = (limits, wrist_only_one_way, LIMITS, JOINTS, wrist_only_one_way(HOME.translation, HOME.quat_xyzw), HOME)
    gripper = {"gripper_opening_m": GRIPPER_OPENING_M}
    validated = validate_either_way(plan, *args, **gripper)
    np.testing.assert_allclose(validated.plan.grasp.rotation.apply([1, 0, 0]), [-1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(validated.plan.grasp.translation, plan.grasp.translation)
    with pytest.raises(PlanRejected) as info:  # a workspace violation is not the wrist's fault: no retry
        validate_either_way(plan_pick_and_place(surface(), waypoints(end=(0.6, 0.7, 0.0)), params), *args, **gripper)
    assert info.value.check == "workspace"


def test_a_grasp_turned_about_the_vertical_spans_the_footprint_across_its_new_direction(params):
    long_box = replace(surface(), length_m=0.07, width_m=0.03)
    plan = plan_pick_and_place(long_box, waypoints(), params)
    across = plan.turned(np.pi / 2)
    assert (across.grasp_width_m, across.grasp_length_m) == pytest.approx((0.07, 0.03))
    np.testing.assert_allclose(across.grasp.rotation.apply([1, 0, 0]), [0, 1, 0], atol=1e-9)
    np.testing.assert_allclose(across.grasp.translation, plan.grasp.translation)  # same point, other fingers
    assert plan.turned(np.radians(30)).grasp_width_m == pytest.approx(0.03 * np.cos(np.pi / 6) + 0.07 * 0.5)
    assert plan.turned_half().grasp_width_m == pytest.approx(0.03)


def test_a_shifted_grasp_holds_the_object_off_centre_and_carries_it_to_the_same_place(params):
    """The hand moves along its fingers' length at every pose; the object (held -shift from the TCP) is
    picked from and placed at the same points, so the task is unchanged."""
    plan = plan_pick_and_place(replace(surface(), length_m=0.07, width_m=0.03), waypoints(), params)
    shifted = plan.shifted(0.012)
    along = plan.grasp.rotation.apply([1.0, 0.0, 0.0])
    for before, after in zip(
        (plan.pre_grasp, plan.grasp, *plan.carry_waypoints, plan.place),
        (shifted.pre_grasp, shifted.grasp, *shifted.carry_waypoints, shifted.place),
        strict=True,
    ):
        np.testing.assert_allclose(after.translation - before.translation, 0.012 * along, atol=1e-12)
        np.testing.assert_allclose(after.rotation.as_matrix(), before.rotation.as_matrix())
    held, held_shifted = held_object_box(plan, 0.0), held_object_box(shifted, 0.0)
    object_at_grasp = plan.grasp.apply(held.pose.translation)
    np.testing.assert_allclose(shifted.grasp.apply(held_shifted.pose.translation), object_at_grasp, atol=1e-12)
    np.testing.assert_allclose(
        shifted.place.apply(held_shifted.pose.translation), plan.place.apply(held.pose.translation), atol=1e-12
    )
    assert shifted.grasp_width_m == plan.grasp_width_m


def test_shifted_candidates_follow_every_turn_only_where_the_fingertips_still_hold_the_object(params):
    """A 70 x 30 mm box: held across its width, 35 mm of it lies along the fingers' length on each
    side, so a 12 mm shift leaves a 20 mm pad on it; turned 90 deg, only 15 mm does, and it is not tried."""
    sampling = PlanningParams(grasp_yaw_offsets_deg=(0.0, 90.0), grasp_shifts_m=(0.012, -0.012), finger_pad_m=0.02)
    plan = plan_pick_and_place(replace(surface(), length_m=0.07, width_m=0.03), waypoints(), params)
    names = [name for name, _ in grasp_candidates(plan, sampling)]
    assert names == ["yaw +0 deg", "yaw +90 deg", "yaw +0 deg, +12 mm along", "yaw +0 deg, -12 mm along"]
    unknown_length = replace(plan, grasp_length_m=0.0)
    assert [name for name, _ in grasp_candidates(unknown_length, sampling)] == ["yaw +0 deg", "yaw +90 deg"]


def test_grasp_candidates_are_tried_in_order_and_every_refusal_is_named(params, limits):
    """The first grasp that passes runs and names those refused before it; when none passes the
    rejection names every one; a check no other grasp can pass (the place is outside the workspace) is
    not retried. The collision model here hits whichever hand comes down with its fingers along x."""
    plan = plan_pick_and_place(surface(), waypoints(), params)
    candidates = grasp_candidates(plan, PlanningParams(grasp_yaw_offsets_deg=(0.0, 90.0, 30.0)))
    assert [name for name, _ in candidates] == ["yaw +0 deg", "yaw +90 deg", "yaw +30 deg"]

    def validate_with(collides):
        def validate_candidate(candidate, grasps_tried):
            q0 = smooth_ik(HOME.translation, HOME.quat_xyzw)
            return validate_plan(
                candidate, limits, smooth_ik, LIMITS, JOINTS, q0, HOME,
                gripper_opening_m=GRIPPER_OPENING_M, collides=collides, grasps_tried=grasps_tried,
            )  # fmt: skip

        return validate_candidate

    def fingers_along_x_hit_the_neighbour(joints, carrying):
        fingers_along_x = abs(np.cos(joints[6])) > 0.99  # smooth_ik's last joint is the yaw
        return Collision("panda_hand", "purple_cylinder", -0.008) if fingers_along_x and joints[3] < 0.07 else None

    validated = validate_candidates(candidates, validate_with(fingers_along_x_hit_the_neighbour))
    assert validated.plan is candidates[1][1]
    assert validated.grasps_tried[0].startswith("yaw +0 deg: collision: descend sample")
    assert "panda_hand 8 mm into purple_cylinder" in validated.grasps_tried[0]
    assert validated.grasps_tried[1:] == ("yaw +90 deg: ok",)

    with pytest.raises(PlanRejected) as info:
        validate_candidates(candidates, validate_with(lambda joints, carrying: Collision("panda_hand", "tray", -0.01)))
    assert info.value.check == "collision" and "none of 3 grasps passed" in info.value.reason
    assert [line.split(":")[0] for line in info.value.grasps_tried] == ["yaw +0 deg", "yaw +90 deg", "yaw +30 deg"]

    outside = plan_pick_and_place(surface(), waypoints(end=(0.6, 0.7, 0.0)), params)
    with pytest.raises(PlanRejected) as info:
        validate_candidates(
            grasp_candidates(outside, PlanningParams(grasp_yaw_offsets_deg=(0.0, 90.0))), validate_with(None)
        )
    assert info.value.check == "workspace" and len(info.value.grasps_tried) == 1
