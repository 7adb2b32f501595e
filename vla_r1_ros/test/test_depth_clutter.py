"""Depth clutter and the measured tray on the real simulator (PyBullet workcell, its rendered depth):
what the camera sees standing above the table becomes obstacle columns the arm is checked against —
a plan through a body the simulator's scene does not list is refused from depth alone, a plan past the
other objects is accepted, the object being picked and the arm are never obstacles, depth holes and NaN
are no obstacles — and the tray is measured from depth near where the config expects it (used when a
little off, refused when far off)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_r1_ros.core.clutter import ClutterSettings, depth_clutter
from vla_r1_ros.core.collision import SeenObstacles
from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.lifting import LiftParams, lift_prediction
from vla_r1_ros.core.parsing import box_to_pixels, parse_answer, waypoints_to_pixels
from vla_r1_ros.core.planning import PlanningParams, PlanRejected, SafetyLimits, plan_pick_and_place
from vla_r1_ros.core.prompts import format_answer
from vla_r1_ros.core.scene import reference_box, reference_waypoints
from vla_r1_ros.core.tabletop import RgbdView, tray_sample
from vla_r1_ros.core.tray import TrayOffConfig, TrayPose, TrayTolerance, locate_tray
from vla_r1_ros.executors.base import validate_for
from vla_r1_ros.executors.sim import SimArmExecutor
from vla_r1_ros.testing.arrange import depth_only_box, move_tray, remove_body

CONFIG = PackageConfig.load()
CAMERA, WORKSPACE = CONFIG.camera, CONFIG.workspace
BASE_T_CAMERA = camera_extrinsics(CAMERA)
LIFT = LiftParams.from_config(WORKSPACE, CAMERA)
SETTINGS = ClutterSettings.from_config(CONFIG.workcell, WORKSPACE)
LIMITS = SafetyLimits.from_config(WORKSPACE)
GRASPS = PlanningParams.from_config(WORKSPACE)


@pytest.fixture(scope="module")
def arm():
    from vla_r1_ros.sim.workcell import Workcell

    cell = Workcell(CONFIG)
    yield SimArmExecutor(cell)
    cell.close()


@pytest.fixture
def depth_only(arm, monkeypatch):
    """The simulator's own object boxes off: only what depth shows is an obstacle (a real cell's case)."""
    monkeypatch.setitem(arm.workcell.config["collision"], "scene_objects", False)


def view(frame) -> RgbdView:
    return RgbdView(frame.color, frame.depth_mm.astype(float) / 1000.0, frame.intrinsics, BASE_T_CAMERA)


def expert_trial(arm, seed: int):
    """Reset to `seed`: the scripted expert's answer for the first visible object, lifted and planned."""
    arm.workcell.reset(seed)
    frame, scene = arm.workcell.capture()
    k = frame.intrinsics
    target = next(o for o in scene.objects if o.bbox_px is not None)
    box = parse_answer(format_answer("x", reference_box(target, k)), "affordance")
    path = parse_answer(
        format_answer("x", [tuple(q) for q in reference_waypoints(scene, target, k, BASE_T_CAMERA)]), "trajectory"
    )
    lifted = lift_prediction(
        frame.depth_mm,
        k,
        box_to_pixels(box.box, k.width, k.height),
        waypoints_to_pixels(path.waypoints, k.width, k.height),
        LIFT,
    ).transformed(BASE_T_CAMERA, "panda_link0")
    return (
        target,
        scene,
        lifted,
        plan_pick_and_place(lifted.grasp, lifted.surface_waypoints, PlanningParams.from_config(WORKSPACE)),
    )


def clutter(arm, scene, picked, depth_m=None):
    frame, _ = arm.workcell.capture()
    seen = view(frame) if depth_m is None else RgbdView(frame.color, depth_m, frame.intrinsics, BASE_T_CAMERA)
    return depth_clutter(
        seen.base_points(LIFT, SETTINGS.pixel_stride), TrayPose.of(scene.tray), picked, arm.arm_chain(), SETTINGS
    )


def test_a_plan_through_clutter_only_depth_shows_is_refused_naming_the_box_and_how_deep(arm, depth_only):
    _, scene, lifted, plan = expert_trial(arm, seed=0)
    assert validate_for(arm, plan, LIMITS, GRASPS) is not None  # the scene's own list has nothing in the way
    # A tall box on the carry path, between the object and the tray, in no Scene the simulator reports.
    middle = (plan.grasp.translation[:2] + plan.place.translation[:2]) / 2
    uid = depth_only_box(arm.workcell, np.array([*middle, 0.175]), np.array([0.06, 0.06, 0.35]))
    try:
        assert all("depth" not in o.name for o in arm.workcell.scene().objects)
        boxes = clutter(arm, scene, lifted.grasp)
        with pytest.raises(PlanRejected) as rejected:
            validate_for(arm, plan, LIMITS, GRASPS, SeenObstacles(None, boxes))
    finally:
        remove_body(arm.workcell, uid)
    assert rejected.value.check == "collision"
    assert "mm into depth_clutter_" in rejected.value.reason, rejected.value.reason
    assert validate_for(arm, plan, LIMITS, GRASPS) is not None  # without what depth saw it would have moved


@pytest.mark.parametrize("seed", [1, 2])
def test_clutter_off_the_path_is_checked_and_the_plan_accepted(arm, depth_only, seed):
    _, scene, lifted, plan = expert_trial(arm, seed)
    boxes = clutter(arm, scene, lifted.grasp)
    assert len(boxes) >= 3 * 4  # the other objects, a few columns each
    validated = validate_for(arm, plan, LIMITS, GRASPS, SeenObstacles(None, boxes))
    assert validated.plan is not None


def inside(box_centre: np.ndarray, obj) -> bool:
    local = np.abs(box_centre[:2] - np.asarray(obj.position[:2]))
    return bool(np.all(local <= np.asarray(obj.size[:2]) / 2))


def test_the_picked_object_is_never_an_obstacle_but_its_neighbours_are(arm):
    target, scene, lifted, _ = expert_trial(arm, seed=3)
    boxes = clutter(arm, scene, lifted.grasp)
    assert not [b.name for b in boxes if inside(b.pose.translation, target)]
    others = [o for o in scene.objects if o.name != target.name and o.visible]
    assert all(any(inside(b.pose.translation, o) for b in boxes) for o in others)  # every other one is seen
    unpicked = clutter(arm, scene, None)  # the exclusion is what leaves it out
    assert any(inside(b.pose.translation, target) for b in unpicked)


def test_depth_holes_and_nan_are_no_obstacles(arm):
    _, scene, lifted, _ = expert_trial(arm, seed=1)
    frame, _ = arm.workcell.capture()
    depth = frame.depth_mm.astype(float) / 1000.0
    assert clutter(arm, scene, lifted.grasp, np.full_like(depth, np.nan)) == ()
    assert clutter(arm, scene, lifted.grasp, np.zeros_like(depth)) == ()
    full = clutter(arm, scene, lifted.grasp, depth)
    holed = depth.copy()
    rng = np.random.default_rng(0)
    holed[rng.random(depth.shape) < 0.2] = np.nan
    holed[rng.random(depth.shape) < 0.1] = 0.0
    cells = {tuple(np.floor(b.pose.translation[:2] / SETTINGS.voxel_m).astype(int)) for b in full}
    seen = clutter(arm, scene, lifted.grasp, holed)
    assert seen and {tuple(np.floor(b.pose.translation[:2] / SETTINGS.voxel_m).astype(int)) for b in seen} <= cells


def test_the_arm_low_over_the_table_is_not_clutter(arm):
    _, scene, _, _ = expert_trial(arm, seed=2)
    down = arm.tcp_pose().quat_xyzw
    low = arm.solve_ik(np.array([0.62, -0.28, 0.10]), down, arm.joint_positions())
    assert low is not None
    arm.workcell.arm.teleport(low)
    arm.workcell.step(0.2)
    tcp = arm.tcp_pose().translation
    boxes = clutter(arm, scene, None)
    near_tcp = [b for b in boxes if np.linalg.norm(b.pose.translation[:2] - tcp[:2]) < 0.08]
    assert near_tcp == []
    frame, _ = arm.workcell.capture()
    unmasked = depth_clutter(
        view(frame).base_points(LIFT, 2), TrayPose.of(scene.tray), None, np.zeros((0, 3)), SETTINGS
    )
    assert [b for b in unmasked if np.linalg.norm(b.pose.translation[:2] - tcp[:2]) < 0.08]  # the hand is seen


def configured_tray_scene(arm, offset_xy):
    arm.workcell.reset(4)
    expected = TrayPose.configured(CONFIG.workcell)
    move_tray(arm.workcell, expected.centre[:2] + np.asarray(offset_xy))
    frame, _ = arm.workcell.capture()
    return expected, tray_sample(view(frame), LIFT)


def test_the_tray_a_little_off_the_config_is_measured_where_it_stands(arm):
    expected, points = configured_tray_scene(arm, [0.01, 0.0])
    measured = locate_tray(points, expected, LIMITS.table_z, TrayTolerance.from_config(WORKSPACE))
    np.testing.assert_allclose(measured.centre[:2], expected.centre[:2] + np.array([0.01, 0.0]), atol=0.007)


def test_the_tray_far_from_the_config_is_refused_naming_the_offset(arm):
    expected, points = configured_tray_scene(arm, [0.05, 0.0])
    with pytest.raises(TrayOffConfig, match=r"measured at .* (4[5-9]|5[0-5]) mm and \d+ deg off \(tolerance 20 mm"):
        locate_tray(points, expected, LIMITS.table_z, TrayTolerance.from_config(WORKSPACE))
