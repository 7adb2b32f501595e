"""The workcell's collision description (core/collision.py) and the PyBullet checker (sim/collision.py)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_r1_ros.core.collision import (
    HELD_OBJECT,
    camera_mount_boxes,
    picked_object,
    tray_boxes,
    workcell_obstacles,
)
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import look_at
from vla_r1_ros.core.lifting import GraspSurface
from vla_r1_ros.core.planning import PlanningParams, held_object_box, plan_pick_and_place
from vla_r1_ros.core.scene import ObjectState

WORKCELL, CAMERA = load_config("workcell"), load_config("camera")
MOUNT = WORKCELL["collision"]["camera_mount"]


def corners(box) -> np.ndarray:
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    return box.pose.apply(signs * box.size / 2)


def test_tray_walls_and_floor_fill_the_trays_extent():
    boxes = tray_boxes([0.4, 0.3, 0.03], [0, 0, 0, 1], [0.24, 0.2, 0.06], 0.008)
    points = np.vstack([corners(b) for b in boxes])
    np.testing.assert_allclose(points.min(axis=0), [0.28, 0.2, 0.0], atol=1e-9)
    np.testing.assert_allclose(points.max(axis=0), [0.52, 0.4, 0.06], atol=1e-9)
    floor = next(b for b in boxes if b.name == "tray_floor")
    assert floor.pose.translation[2] == pytest.approx(0.004)  # the floor lies on the table
    assert {b.name for b in boxes} == {"tray_floor", "tray_wall_+x", "tray_wall_-x", "tray_wall_+y", "tray_wall_-y"}


@pytest.mark.parametrize("eye", [(1.05, 0.0, 0.8), (0.45, -0.42, 0.45), (0.2, 0.6, 0.9)])
def test_the_camera_mount_stands_behind_the_camera_wherever_it_is(eye):
    pose = look_at(eye, [0.4, 0.0, 0.0])
    camera = {**CAMERA, "extrinsics": {"translation": list(eye), "rotation_xyzw": pose.quat_xyzw.tolist()}}
    housing, pole = camera_mount_boxes(camera, MOUNT)
    # The housing is behind the lens: nothing of it lies in front of the optical frame.
    in_camera = pose.inverse().apply(corners(housing))
    assert in_camera[:, 2].max() == pytest.approx(0.0, abs=1e-9)
    # The pole is farther from what the camera looks at than the camera, and reaches up to it.
    target = np.array([0.4, 0.0])
    assert np.linalg.norm(pole.pose.translation[:2] - target) > np.linalg.norm(np.array(eye[:2]) - target)
    np.testing.assert_allclose(corners(pole)[:, 2].max(), eye[2], atol=1e-9)
    np.testing.assert_allclose(corners(pole)[:, 2].min(), MOUNT["pole_bottom_z_m"], atol=1e-9)


def test_the_held_object_hangs_from_the_tcp_down_to_the_table():
    cube = GraspSurface(np.array([0.5, 0.0, 0.05]), np.array([0, 0, 1.0]), np.array([1.0, 0, 0]), 0.05, 0.05, 0.04, 9)
    plan = plan_pick_and_place(cube, np.array([cube.point, [0.45, 0.3, 0.0]]), PlanningParams())
    held = held_object_box(plan, table_z=0.0)
    assert held.name == HELD_OBJECT
    in_base = plan.grasp.apply(corners(held))  # the TCP frame at the grasp, into the base frame
    np.testing.assert_allclose(in_base[:, 2].min(), 0.0, atol=1e-9)
    np.testing.assert_allclose(in_base[:, 2].max(), 0.05, atol=1e-9)
    np.testing.assert_allclose(held.size[:2], [0.04, 0.04])


def obj(name, x, y, size=(0.05, 0.05, 0.05)):
    return ObjectState(name, "red", "cube", (x, y, size[2] / 2), (0.0, 0.0, 0.0, 1.0), size)


def test_the_picked_object_is_no_obstacle_the_others_are():
    objects = (obj("a", 0.4, 0.0), obj("b", 0.5, 0.1))
    assert picked_object(objects, [0.41, 0.01, 0.05]) == "a"
    assert picked_object(objects, [0.45, 0.05, 0.05]) is None
    from vla_r1_ros.core.scene import Scene

    scene = Scene(
        0, objects, ObjectState("tray", "grey", "tray", (0.45, 0.3, 0.03), (0, 0, 0, 1), (0.24, 0.24, 0.06)), (0, 0, 0)
    )
    names = [b.name for b in workcell_obstacles(WORKCELL, CAMERA, scene, [0.41, 0.01, 0.05])]
    assert "b" in names and "a" not in names and "table" in names and "camera_pole" in names
    unseen = workcell_obstacles(WORKCELL, CAMERA)  # no scene: the configured tray, no objects
    floor = next(b for b in unseen if b.name == "tray_floor")
    np.testing.assert_allclose(floor.pose.translation[:2], WORKCELL["collision"]["tray_when_unseen"]["centre_base"][:2])
    assert not {"a", "b"} & {b.name for b in unseen}


@pytest.fixture(scope="module")
def checker():
    from vla_r1_ros.sim.collision import PandaCollisionChecker

    checker = PandaCollisionChecker(WORKCELL)
    yield checker
    checker.close()


HOME = np.array(WORKCELL["robot"]["home_joints"])


OBSTACLES = tuple(workcell_obstacles(WORKCELL, CAMERA))


def test_home_is_collision_free_and_a_hand_on_the_table_is_not(checker):
    from vla_r1_ros.sim.collision import CollisionScene

    check = checker.check(CollisionScene(OBSTACLES))
    assert check(HOME, False) is None
    down = np.array([0.0, 1.5, 0.0, -0.8, 0.0, 1.5, 0.785])  # leaning far forward: the wrist in the table
    hit = check(down, False)
    assert hit is not None and hit.obstacle == "table" and hit.distance_m < 0
    assert hit.link in WORKCELL["collision"]["robot_links"]


def test_a_held_object_is_checked_only_while_carrying(checker):
    from vla_r1_ros.core.collision import Box
    from vla_r1_ros.core.geometry import RigidTransform
    from vla_r1_ros.sim.collision import CollisionScene

    long_bar = Box(HELD_OBJECT, np.array([0.04, 0.04, 1.0]), RigidTransform.identity())  # reaches the table
    check = checker.check(CollisionScene(OBSTACLES, long_bar))
    assert check(HOME, False) is None
    hit = check(HOME, True)
    assert hit is not None and hit.link == HELD_OBJECT and hit.obstacle == "table"
    # Two validations in turn (or in two threads) each see their own scene.
    empty = checker.check(CollisionScene(()))
    assert empty(HOME, True) is None and check(HOME, True) is not None


def test_the_validator_checks_every_sample_carrying_only_between_grasp_and_release():
    """core/planning.validate_plan asks the collision check at every IK sample, telling it when the
    object is held; the first hit rejects the plan with `collision`, naming link and obstacle."""
    from test_planning_safety import GRIPPER_OPENING_M, HOME, JOINTS, LIMITS, smooth_ik, surface, waypoints

    from vla_r1_ros.core.collision import Collision
    from vla_r1_ros.core.planning import MotionSegment, PlanRejected, SafetyLimits, validate_plan

    limits = SafetyLimits.from_config(load_config("workspace"))
    plan = plan_pick_and_place(surface(), waypoints(), PlanningParams.from_config(load_config("workspace")))
    asked: list[tuple[tuple[float, ...], bool]] = []

    def record(joints, carrying):
        asked.append((tuple(joints), carrying))
        return None

    q0 = smooth_ik(HOME.translation, HOME.quat_xyzw)
    args = (plan, limits, smooth_ik, LIMITS, JOINTS, q0, HOME)
    validated = validate_plan(*args, gripper_opening_m=GRIPPER_OPENING_M, collides=record)
    expected = [
        (tuple(q), segment.name in ("lift", "carry", "lower"))
        for segment in validated.steps
        if isinstance(segment, MotionSegment)
        for q in segment.joints
    ]
    assert asked == expected

    def wall_on_the_carry(joints, carrying):
        return Collision("panda_hand", "tray_wall_-y", -0.004) if carrying and joints[2] > 0.1 else None

    with pytest.raises(PlanRejected) as rejected:
        validate_plan(*args, gripper_opening_m=GRIPPER_OPENING_M, collides=wall_on_the_carry)
    assert rejected.value.check == "collision"
    assert "panda_hand 4 mm into tray_wall_-y" in rejected.value.reason and "carry sample" in rejected.value.reason
