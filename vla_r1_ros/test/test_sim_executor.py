"""The simulated Panda executor: full pick-and-place from scripted predictions (the scene's reference box
and waypoints written in the model's format and parsed back) puts the object in the tray and is judged
against the instruction (success only for the instructed object, `wrong_object` for another one); a
grasp on nothing is reported as such; cancel halts the arm."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import camera_extrinsics
from vla_r1_ros.core.lifting import LiftParams, lift_prediction
from vla_r1_ros.core.parsing import box_to_pixels, parse_answer, waypoints_to_pixels
from vla_r1_ros.core.planning import PlanningParams, SafetyLimits, plan_pick_and_place
from vla_r1_ros.core.prompts import format_answer
from vla_r1_ros.core.scene import make_instruction, reference_box, reference_waypoints
from vla_r1_ros.executors.base import validate_for
from vla_r1_ros.executors.sim import SimArmExecutor

CAMERA, WORKSPACE = load_config("camera"), load_config("workspace")
BASE_T_CAMERA = camera_extrinsics(CAMERA)


@pytest.fixture(scope="module")
def arm():
    from vla_r1_ros.sim.workcell import Workcell

    cell = Workcell()
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


@pytest.mark.parametrize(("seed", "pick"), [(0, 0), (1, 1), (2, 2)])
def test_pick_and_place_puts_the_instructed_object_in_the_tray(arm, seed, pick):
    target, plan = scripted_plan(arm, seed, pick)
    instruction = instruction_for(arm, target.name)
    result = arm.execute(validate(arm, plan), should_stop=lambda: False, instruction=instruction)
    assert result.success, result.message
    assert result.outcome_source == "simulator" and result.failure_stage == ""
    assert result.held_object == target.name and result.target == target.name
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
    expert = ScriptedExpertPolicy(path_convention=convention)
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
    assert result.objects_in_tray == (picked.name,) and result.target == other.name
    assert result.outcome_source == "simulator"


def test_without_an_instruction_the_placement_is_not_judged(arm):
    _, plan = scripted_plan(arm, 7, pick=0)
    result = arm.execute(validate(arm, plan), should_stop=lambda: False)
    assert not result.success and result.outcome_source == "none" and result.failure_stage == ""
    assert len(result.objects_in_tray) == 1  # the physics still says what is there


def test_a_grasp_on_nothing_is_a_grasp_failure(arm):
    _, plan = scripted_plan(arm, 3)
    up = np.array([0.0, 0.0, 0.06])
    in_the_air = replace(
        plan,
        grasp=replace(plan.grasp, translation=plan.grasp.translation + up),
        pre_grasp=replace(plan.pre_grasp, translation=plan.pre_grasp.translation + up),
    )
    result = arm.execute(validate(arm, in_the_air), should_stop=lambda: False)
    assert not result.success and result.failure_stage == "grasp"
    assert "nothing" in result.message


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
