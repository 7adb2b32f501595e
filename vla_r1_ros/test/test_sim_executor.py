"""The simulated Panda executor: full pick-and-place from scripted predictions (the scene's reference box
and waypoints written in the model's format and parsed back) puts the object in the tray and is judged
against the instruction (success only for the instructed object, `wrong_object` for another one); a
grasp on nothing is reported as such; cancel halts the arm."""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vla_r1_ros.core.config import PackageConfig, load_config
from vla_r1_ros.core.geometry import camera_extrinsics, look_at
from vla_r1_ros.core.lifting import GraspSurface, LiftParams, lift_prediction
from vla_r1_ros.core.parsing import box_to_pixels, parse_answer, waypoints_to_pixels
from vla_r1_ros.core.planning import PlanningParams, PlanRejected, SafetyLimits, plan_pick_and_place
from vla_r1_ros.core.prompts import format_answer
from vla_r1_ros.core.scene import make_instruction, reference_box, reference_waypoints
from vla_r1_ros.executors.base import validate_for
from vla_r1_ros.executors.sim import SimArmExecutor

CAMERA, WORKSPACE = load_config("camera"), load_config("workspace")
BASE_T_CAMERA = camera_extrinsics(CAMERA)


@pytest.fixture(scope="module")
def arm():
    from vla_r1_ros.sim.workcell import Workcell

    cell = Workcell(PackageConfig.load())
    yield SimArmExecutor(cell)
    cell.close()


def scripted_plan(arm: SimArmExecutor, seed: int, pick: int = 0):
    """Reset to `seed`; plan a pick of the `pick`-th visible object from its scripted prediction."""
    arm.workcell.reset(seed)
    frame, scene = arm.workcell.capture()
    k = frame.intrinsics
    target = [o for o in scene.objects if o.bbox_px is not None][pick]
    box = parse_answer(format_answer("scripted", reference_box(target, k)), "affordance")
    path = [tuple(p) for p in reference_waypoints(scene, target, k, BASE_T_CAMERA)]
    trajectory = parse_answer(format_answer("scripted", path), "trajectory")
    return target, plan_answers(frame, box, trajectory)


def plan_answers(frame, box, trajectory):
    """Lift parsed box + trajectory answers through the frame's depth and plan, as the planning node does."""
    assert box.ok and trajectory.ok
    k = frame.intrinsics
    lifted = lift_prediction(
        frame.depth_mm,
        k,
        box_to_pixels(box.box, k.width, k.height),
        waypoints_to_pixels(trajectory.waypoints, k.width, k.height),
        LiftParams.from_config(WORKSPACE, CAMERA),
    ).transformed(BASE_T_CAMERA, "panda_link0")
    return plan_pick_and_place(lifted.grasp, lifted.surface_waypoints, PlanningParams.from_config(WORKSPACE))


def validate(arm: SimArmExecutor, plan):
    return validate_for(arm, plan, SafetyLimits.from_config(WORKSPACE))


def instruction_for(arm: SimArmExecutor, name: str) -> str:
    return make_instruction(arm.workcell.scene().object(name), np.random.default_rng(0))


@pytest.mark.parametrize(("seed", "pick"), [(0, 0), (1, 0), (2, 2)])
def test_pick_and_place_puts_the_instructed_object_in_the_tray(arm, seed, pick):
    target, plan = scripted_plan(arm, seed, pick)
    instruction = instruction_for(arm, target.name)
    result = arm.execute(validate(arm, plan), should_stop=lambda: False, instruction=instruction)
    assert result.success, result.message
    assert result.outcome_source == "simulator" and result.failure_stage == ""
    assert result.held_object == target.name and target.name in result.message
    assert target.name in result.objects_in_tray == arm.workcell.objects_in_tray()
    path = np.array(result.ee_path)
    assert len(path) > 10 and np.all(path[:, 2] > 0.0)


@pytest.mark.parametrize("convention", ["carry", "sharerobot"])
def test_the_scripted_experts_paths_in_either_convention_put_the_object_in_the_tray(arm, convention):
    """The scripted expert's own answer text on a rendered frame: a ShareRobot-style path (from the
    gripper's projection) and a carry path (from the object) both end with the object in the tray."""
    from vla_r1_ros.policies.scripted import ScriptedExpertPolicy

    arm.workcell.reset(6)
    frame, scene = arm.workcell.capture()
    target = next(o for o in scene.objects if o.bbox_px is not None)
    instruction = f"put the {target.colour} {target.shape} in the tray"
    expert = ScriptedExpertPolicy(CAMERA, path_convention=convention)
    box, trajectory = (parse_answer(expert.answer(scene, instruction, t), t) for t in ("affordance", "trajectory"))
    assert len(trajectory.waypoints) == {"carry": 4, "sharerobot": 5}[convention]
    plan = plan_answers(frame, box, trajectory)
    assert len(plan.carry_waypoints) == 3  # the approach from the gripper is not part of the transport
    result = arm.execute(validate(arm, plan), should_stop=lambda: False, instruction=instruction)
    assert result.success, result.message
    assert arm.workcell.object_in_tray(target.name)


def test_placing_another_object_than_the_instructed_one_is_wrong_object(arm):
    picked, plan = scripted_plan(arm, 6, pick=0)
    other = next(o for o in arm.workcell.scene().objects if o.name != picked.name and o.colour != picked.colour)
    result = arm.execute(validate(arm, plan), should_stop=lambda: False, instruction=instruction_for(arm, other.name))
    assert not result.success and result.failure_stage == "wrong_object", result.message
    assert result.objects_in_tray == (picked.name,) and f"the instruction names {other.name}" in result.message
    assert result.outcome_source == "simulator"


def test_without_an_instruction_the_placement_is_not_judged(arm):
    _, plan = scripted_plan(arm, 0, pick=0)
    result = arm.execute(validate(arm, plan), should_stop=lambda: False)
    assert not result.success and result.outcome_source == "none" and result.failure_stage == ""
    assert len(result.objects_in_tray) == 1  # the physics still says what is there


def free_spot(scene, clearance: float = 0.12) -> np.ndarray:
    """A table point in the spawn region at least `clearance` from every object and the tray (xy)."""
    others = [np.array(o.position[:2]) for o in (*scene.objects, scene.tray)]
    for x in np.linspace(0.36, 0.6, 13):
        for y in np.linspace(-0.2, 0.2, 21):
            if all(np.linalg.norm(np.array([x, y]) - o) >= clearance for o in others):
                return np.array([x, y])
    raise AssertionError("no free spot in this layout")


def shifted_grasp(plan, offset: np.ndarray):
    """The plan with its grasp (and what it is built on) moved by `offset`: the fingers close on air."""

    def moved(pose):
        return replace(pose, translation=pose.translation + offset)

    return replace(
        plan,
        grasp_surface_point=plan.grasp_surface_point + offset,
        grasp=moved(plan.grasp),
        pre_grasp=moved(plan.pre_grasp),
    )


def test_a_grasp_that_misses_the_object_fails_at_grasp_and_backs_up(arm):
    _, plan = scripted_plan(arm, 3)
    scene = arm.workcell.scene()
    offset = np.array([*(free_spot(scene) - plan.grasp.translation[:2]), 0.0])
    validated = validate(arm, shifted_grasp(plan, offset))
    result = arm.execute(validated, should_stop=lambda: False)
    assert not result.success and result.failure_stage == "grasp"
    assert "nothing between the fingers" in result.message and result.held_object is None
    # Backed up the checked descent to the pre-grasp pose, gripper open, nothing else moved.
    pre_grasp = validated.steps[0].joints[-1]
    assert np.max(np.abs(arm.workcell.joint_positions() - pre_grasp)) < 0.02
    assert np.sum(arm.workcell.finger_positions()) > 0.07
    after = {o.name: np.array(o.position) for o in arm.workcell.scene().objects}
    for o in scene.objects:
        assert np.linalg.norm(after[o.name] - np.array(o.position)) < 0.005, o.name


def test_the_empty_grasp_threshold_comes_from_the_config(arm):
    """The measured finger width decides: with a threshold above the object's width, a real grasp of a
    5 cm cube counts as empty."""
    target, plan = scripted_plan(arm, 0)
    saved = arm.min_held_width_m
    arm.min_held_width_m = max(target.size[:2]) + 0.01
    try:
        result = arm.execute(validate(arm, plan), should_stop=lambda: False)
    finally:
        arm.min_held_width_m = saved
    assert result.failure_stage == "grasp" and "nothing between the fingers" in result.message


def clear_run_to_the_tray(arm):
    """A scripted pick whose straight line to the tray passes no other object (8 cm clear)."""
    for seed in range(10):
        for pick in range(3):
            target, plan = scripted_plan(arm, seed, pick)
            scene = arm.workcell.scene()
            a, b = plan.grasp.translation[:2], np.array(scene.tray.position[:2])
            ts = np.linspace(0.0, 1.0, 50)[:, None]
            line = a + ts * (b - a)
            others = [np.array(o.position[:2]) for o in scene.objects if o.name != target.name]
            if all(np.min(np.linalg.norm(line - o, axis=1)) > 0.08 for o in others):
                return target, plan
    raise AssertionError("no layout with a clear run to the tray")


def test_a_carry_dragged_through_the_tray_wall_is_refused_and_nothing_moves(arm):
    _, plan = clear_run_to_the_tray(arm)
    tray = arm.workcell.scene().tray
    start = plan.grasp.translation
    # Straight at the tray's centre with the held object 1.5 cm above the table: through the wall.
    height = start[2] + 0.015
    drag = tuple(
        replace(
            plan.place, translation=np.array([*(start[:2] + f * (np.array(tray.position[:2]) - start[:2])), height])
        )
        for f in (0.35, 0.7, 1.0)
    )
    dragged = replace(plan, carry_waypoints=drag)
    before = arm.workcell.joint_positions()
    with pytest.raises(PlanRejected) as rejected:
        validate(arm, dragged)
    assert rejected.value.check == "collision"
    assert "tray_wall" in rejected.value.reason
    assert re.search(r"(panda_\w+|held_object) (touches|\d+ mm into) tray_wall", rejected.value.reason)
    np.testing.assert_array_equal(arm.workcell.joint_positions(), before)


def test_cancel_halts_the_arm(arm):
    _, plan = scripted_plan(arm, 4)
    validated = validate(arm, plan)
    polls = {"n": 0}

    def stop_soon() -> bool:
        polls["n"] += 1
        return polls["n"] > 30  # part-way through the approach

    result = arm.execute(validated, should_stop=stop_soon)
    assert result.failure_stage == "cancelled" and not result.success
    held = arm.workcell.joint_positions()
    approach_end = validated.steps[0].joints[-1]
    assert np.max(np.abs(held - approach_end)) > 0.05  # it did not finish the approach
    arm.workcell.step(0.5)
    assert np.max(np.abs(arm.workcell.joint_positions() - held)) < 0.01  # and it stays stopped


def test_refuses_a_plan_validated_from_elsewhere(arm):
    _, plan = scripted_plan(arm, 5)
    validated = validate(arm, plan)
    arm.workcell.home()  # already home: nothing changes ...
    moved = validate(arm, plan)
    arm.workcell.execute_joint_path(moved.steps[0].joints[:5], 0.5)  # ... now the arm is elsewhere
    result = arm.execute(validated, should_stop=lambda: False)
    assert result.failure_stage == "execute" and "since validation" in result.message
    with pytest.raises(TypeError):
        arm.execute(plan, should_stop=lambda: False)


@pytest.mark.slow
def test_success_rate_over_seeds(arm):
    """Perfect (scripted) predictions over 20 layouts: the control stack alone should almost never fail."""
    successes = 0
    for seed in range(20):
        target, plan = scripted_plan(arm, seed, pick=seed % 3)
        instruction = instruction_for(arm, target.name)
        successes += arm.execute(validate(arm, plan), should_stop=lambda: False, instruction=instruction).success
        arm.workcell.home()
    assert successes >= 18


@pytest.fixture(scope="module")
def side_camera_cell():
    """A workcell whose camera stands beside the workspace (y = -0.42 m, 0.45 m up) instead of across the
    table: its mount is then within the arm's reach."""
    from vla_r1_ros.sim.workcell import Workcell

    camera = copy.deepcopy(CAMERA)
    pose = look_at([0.45, -0.42, 0.45], [0.45, 0.0, 0.0])
    camera["extrinsics"] = {"translation": pose.translation.tolist(), "rotation_xyzw": pose.quat_xyzw.tolist()}
    cell = Workcell(dataclasses.replace(PackageConfig.load(), camera=camera))
    yield cell
    cell.close()


def ground_truth_grasp(target) -> GraspSurface:
    yaw = Rotation.from_quat(target.quat_xyzw).as_euler("xyz")[2]
    axis = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    return GraspSurface(
        target.top_center, np.array([0.0, 0.0, 1.0]), axis, target.size[2], target.size[0], target.size[1], 100
    )


def test_a_carry_through_the_camera_mount_is_refused(side_camera_cell):
    arm = SimArmExecutor(side_camera_cell)
    pole = next(b for b in side_camera_cell.obstacles() if b.name == "camera_pole")
    assert pole.pose.translation[1] < -0.44  # behind the camera, away from the workspace
    seed = next(s for s in range(20) if side_camera_cell.reset(s).tray.position[1] < 0)  # tray on the mount's side
    scene = side_camera_cell.scene()
    target = min(scene.objects, key=lambda o: o.position[1])
    tray = np.array(scene.tray.position)
    # Out past the pole and back into the tray, 15 cm above the table: the hand sweeps the pole.
    via = [np.array([pole.pose.translation[0], y, 0.0]) for y in (-0.27, pole.pose.translation[1] + 0.01)]
    grasp = ground_truth_grasp(target)  # the path starts at the object (the carry convention)
    waypoints = np.array([grasp.point, *via, [tray[0], tray[1], tray[2] - scene.tray.size[2] / 2 + 0.008]])
    plan = plan_pick_and_place(grasp, waypoints, PlanningParams.from_config(WORKSPACE))
    before = side_camera_cell.joint_positions()
    with pytest.raises(PlanRejected) as rejected:
        validate(arm, plan)
    assert rejected.value.check == "collision", (seed, rejected.value)
    assert re.search(r"panda_\w+ (touches|\d+ mm into) camera_(pole|housing)", rejected.value.reason)
    np.testing.assert_array_equal(side_camera_cell.joint_positions(), before)


@pytest.mark.parametrize(
    ("seed", "pick", "refused"),
    [(513, 1, "collision"), (531, 3, "collision"), (528, 2, "joint_limits")],
    ids=["sphere-beside-a-cylinder", "duck-beside-a-cylinder", "duck-out-of-wrist-range"],
)
def test_another_grasp_is_tried_when_the_first_is_refused(arm, seed, pick, refused):
    """Layouts where the expert's exact answer was refused (measured: `vla-r1 trials --n 60 --seed 500`,
    3 of 60): the grasp across the object's long axis puts the hand into a neighbour, or the wrist out of
    range. The grasp candidates of config/workspace.yaml find one that is not, and it puts the object in
    the tray; the plan names the grasp refused before it."""
    target, plan = scripted_plan(arm, seed, pick)
    with pytest.raises(PlanRejected) as info:
        validate(arm, plan)  # the first grasp only
    assert info.value.check == refused
    validated = validate_for(arm, plan, SafetyLimits.from_config(WORKSPACE), PlanningParams.from_config(WORKSPACE))
    assert validated.grasps_tried[0].startswith(f"yaw +0 deg: {refused}: ")
    assert validated.grasps_tried[-1].endswith(": ok") and len(validated.grasps_tried) >= 2
    result = arm.execute(validated, should_stop=lambda: False, instruction=instruction_for(arm, target.name))
    assert result.success, result.message
    assert arm.workcell.object_in_tray(target.name)
