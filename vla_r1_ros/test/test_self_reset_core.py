"""The self-reset in the real simulator: planned from one frame set, its moves pass the executor's own
validation and run on the simulated arm, after which the layout check passes; the spots it picks keep
their clearance; and a reset that cannot be done says why."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from vla_r1_ros.core.config import PackageConfig
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.object_registry import register_objects
from vla_r1_ros.core.planning import GripperAction, PlanRejected, plan_pick_and_place
from vla_r1_ros.core.scene import sim_marks
from vla_r1_ros.core.self_reset import (
    Hand,
    ResetImpossible,
    ResetSettings,
    carry_waypoints,
    check_layout,
    plan_reset,
)
from vla_r1_ros.core.tabletop import segment_tabletop
from vla_r1_ros.core.tray import TrayPose
from vla_r1_ros.executors.base import validate_for
from vla_r1_ros.executors.sim import SimArmExecutor
from vla_r1_ros.sim.workcell import Workcell
from vla_r1_ros.testing.arrange import arrange_outcome, move_object, view_of

CONFIG = PackageConfig.load()
SEED = 3  # two objects end in the tray (arrange_outcome "two_in_tray" with rng 0)


@pytest.fixture(scope="module")
def arm():
    with Workcell(CONFIG) as workcell:
        yield SimArmExecutor(workcell)


@pytest.fixture(scope="module")
def settings(arm):
    return ResetSettings.from_config(CONFIG.workspace, CONFIG.camera, arm.gripper_opening_m)


def registered(arm, settings):
    """Reset to SEED and register its objects from one frame (the sim's clicks)."""
    arm.workcell.reset(SEED)
    frame, scene = arm.workcell.capture()
    marks = sim_marks(scene, frame.intrinsics, camera_extrinsics(CONFIG.camera))
    expected = TrayPose(np.array(scene.tray.position), np.array(scene.tray.size))
    return register_objects(view_of(frame, CONFIG.camera), marks, expected, settings.segmentation)


def look(arm):
    frame, _ = arm.workcell.capture()
    return view_of(frame, CONFIG.camera)


def test_the_reset_empties_the_tray_with_the_arm(arm, settings):
    registry = registered(arm, settings)
    assert check_layout(look(arm), registry, settings).ok
    arrange_outcome(arm.workcell, np.random.default_rng(0), "two_in_tray")
    messy = look(arm)
    layout = check_layout(messy, registry, settings)
    assert not layout.ok and "2 object(s) in the tray" in layout.message
    moves = plan_reset(messy, registry, np.random.default_rng(0), settings)
    assert sorted(m.object_name for m in moves) == sorted(arm.workcell.objects_in_tray())
    assert all(m.reason == "in the tray" and settings.in_spawn_area(m.place_xy) for m in moves)
    for move in moves:
        plan = plan_pick_and_place(move.grasp, move.surface_waypoints, settings.planning)
        validated = validate_for(arm, plan, settings.limits, settings.planning)
        result = arm.execute(validated, should_stop=lambda: False)
        assert result.failure_stage == "" and result.held_object == move.object_name, result.message
    assert arm.workcell.objects_in_tray() == ()
    arm.workcell.home()
    layout = check_layout(look(arm), registry, settings)
    assert layout.ok, layout.message
    for move in moves:  # each object stands where its move put it
        assert np.linalg.norm(np.array(layout.positions[move.object_name][:2]) - move.place_xy) < 0.02


def test_a_cube_in_a_tray_corner_is_taken_out_by_a_grasp_shifted_off_its_centre(arm, settings):
    """Pressed into the tray's +x/-y corner, every centred grasp puts a finger into a wall; the hand
    shifted along its fingers' length (planning.grasp_shifts_m) holds the cube by its far side."""
    registry = registered(arm, settings)
    workcell = arm.workcell
    tray = workcell.scene().tray
    cube = next(o for o in workcell.scene().objects if o.name == "purple_cube")
    inner = np.array(tray.size[:2]) / 2 - 0.006 - np.array(cube.size[:2]) / 2 - 0.003  # 3 mm off both walls
    corner = np.array(tray.position[:2]) + inner * [1, -1]
    move_object(workcell, "purple_cube", corner, 0.0, bottom_z=float(tray.position[2] - tray.size[2] / 2 + 0.004))
    workcell.home()
    (move,) = plan_reset(look(arm), registry, np.random.default_rng(0), settings)
    assert move.object_name == "purple_cube" and move.reason == "in the tray"
    plan = plan_pick_and_place(move.grasp, move.surface_waypoints, settings.planning)
    with pytest.raises(PlanRejected) as centred:
        validate_for(arm, plan, settings.limits, dataclasses.replace(settings.planning, grasp_shifts_m=()))
    assert centred.value.check == "collision" and all("tray_wall" in why for why in centred.value.grasps_tried)
    validated = validate_for(arm, plan, settings.limits, settings.planning)
    assert "mm along: ok" in validated.grasps_tried[-1]
    result = arm.execute(validated, should_stop=lambda: False)
    assert result.failure_stage == "" and result.held_object == "purple_cube", result.message
    assert workcell.objects_in_tray() == ()
    workcell.home()
    layout = check_layout(look(arm), registry, settings)
    assert np.linalg.norm(np.array(layout.positions["purple_cube"][:2]) - move.place_xy) < 0.02


def test_free_spots_keep_their_clearance_and_strays_come_back(arm, settings):
    registry = registered(arm, settings)
    workcell = arm.workcell
    rng = np.random.default_rng(1)
    strays = [o.name for o in workcell.scene().objects[:2]]  # outside the spawn area, beyond its far edge
    for i, name in enumerate(strays):
        move_object(workcell, name, np.array([0.68, -0.12 + 0.14 * i]), 0.0)
    arrange_outcome(workcell, rng, "wrong_object")
    view = look(arm)
    moves = plan_reset(view, registry, rng, settings)
    reasons = {m.object_name: m.reason for m in moves}
    assert {n: reasons.get(n) for n in strays} == dict.fromkeys(strays, "outside the spawn area")
    assert "in the tray" in reasons.values()
    seen = segment_tabletop(view, registry.table_z, registry.tray, settings.segmentation)

    def radius(length: float, width: float) -> float:
        return float(np.hypot(length, width) / 2)

    gap = settings.clearance_m - 1e-9
    for move in moves:
        r = radius(move.grasp.length_m, move.grasp.width_m)
        for blob in seen.on_table:
            if np.linalg.norm(blob.centroid[:2] - move.grasp.point[:2]) > 1e-6:  # every other object
                assert (
                    np.linalg.norm(move.place_xy - blob.centroid[:2]) >= r + radius(blob.length_m, blob.width_m) + gap
                )
    for a, b in itertools.combinations(moves, 2):
        ra, rb = radius(a.grasp.length_m, a.grasp.width_m), radius(b.grasp.length_m, b.grasp.width_m)
        assert np.linalg.norm(a.place_xy - b.place_xy) >= ra + rb + gap
    for move in moves:  # across to the table in steps the planner accepts
        steps = np.linalg.norm(np.diff(move.surface_waypoints, axis=0), axis=1)
        assert steps[1:].max() <= settings.waypoint_spacing_m + 1e-9
        assert move.surface_waypoints[-1][2] == registry.table_z


def test_a_reset_that_cannot_be_done_says_why(arm, settings):
    registry = registered(arm, settings)
    arrange_outcome(arm.workcell, np.random.default_rng(0), "success")
    view = look(arm)
    cramped = dataclasses.replace(settings, spawn_x_range=(0.40, 0.41), spawn_y_range=(0.0, 0.01))
    with pytest.raises(ResetImpossible, match="no free spot"):
        plan_reset(view, registry, np.random.default_rng(0), cramped)
    narrow = dataclasses.replace(settings, gripper_opening_m=0.03)
    with pytest.raises(ResetImpossible, match=r"cannot grasp .* the gripper opens 30 mm"):
        plan_reset(view, registry, np.random.default_rng(0), narrow)


def test_an_object_left_in_the_hand_is_set_down_first(arm, settings):
    """A grasp never released (a wrong-object trial stopped mid-carry): the arm at its observe pose still
    holds the cube, which the camera then sees nowhere. The reset sets it down on a free spot first,
    through the executor's own validation and execution, and the layout verifies."""
    registry = registered(arm, settings)
    workcell = arm.workcell
    scene = segment_tabletop(look(arm), registry.table_z, registry.tray, settings.segmentation)
    (cube,) = [blob for blob in scene.on_table if registry.match(blob, settings.match)[0].name == "purple_cube"]
    grasp = cube.grasp_surface()
    pick = plan_pick_and_place(
        grasp, carry_waypoints(grasp.point, grasp.point[:2], registry.table_z, 0.2), settings.planning
    )
    for step in validate_for(arm, pick, settings.limits, settings.planning).steps:  # pick it up, keep it
        if isinstance(step, GripperAction):
            workcell.set_gripper(closed=True)
        else:
            workcell.execute_joint_path(step.joints, 0.5)
            if step.name == "lift":
                break
    workcell.home()
    hand = Hand(arm.tcp_pose(), arm.finger_width())
    assert settings.holds_something(hand.finger_width_m)
    layout = check_layout(look(arm), registry, settings)
    assert not layout.ok and "not on the table: purple_cube" in layout.message
    moves = plan_reset(look(arm), registry, np.random.default_rng(0), settings, hand)
    assert [(m.object_name, m.reason, m.grasp) for m in moves] == [("purple_cube", "in the hand", None)]
    result = arm.execute(validate_for(arm, moves[0].plan, settings.limits, settings.planning), lambda: False)
    assert result.failure_stage == "", result.message
    assert not settings.holds_something(arm.finger_width())
    workcell.home()
    layout = check_layout(look(arm), registry, settings)
    assert layout.ok, layout.message
    assert np.linalg.norm(np.array(layout.positions["purple_cube"][:2]) - moves[0].place_xy) < 0.02


def test_a_hand_holding_something_when_every_object_is_seen_is_not_reset(arm, settings):
    registry = registered(arm, settings)
    arm.workcell.home()
    hand = Hand(arm.tcp_pose(), 0.04)  # fingers 40 mm apart, yet every registered object on the table
    with pytest.raises(ResetImpossible, match=r"the gripper holds something \(40 mm apart\) and every registered"):
        plan_reset(look(arm), registry, np.random.default_rng(0), settings, hand)
