"""The MoveIt executor against a TEST DOUBLE of moveit_py (test/moveit_jazzy_double.py).

moveit_py (MoveIt 2's Python API) and moveit_msgs cannot be installed on this machine, so these tests do
NOT talk to MoveIt. The double mirrors moveit_py's Jazzy API (only names that exist there; anything else
raises AttributeError, tested here) and runs PyBullet's Panda behind it: real IK and forward kinematics
for panda_link8, and a planning scene whose `is_state_colliding` checks the links against the collision
objects it was given. What the tests check is our side of the contract: the arm runs exactly the
validator's joint samples (set_robot_trajectory_msg on the arm group, apply_totg_time_parameterization
within the plan's speed scaling, execute(trajectory, controllers=[])); IK goals are for panda_link8; the
gripper goes to its named states through a planning component; the workcell's boxes become collision
objects and a plan through them is refused with `collision`; an empty grasp ends at `grasp`, judged by
the gripper, and every other end of an executed trial is judged by nobody; the start-drift and tracking
checks; failure mapping and stop. A lab checks the real thing (docs/planning.md).
"""

from __future__ import annotations

import copy
import re
import sys

import moveit_jazzy_double as double
import numpy as np
import pytest

from vla_r1_ros.core.collision import Box, CollisionWorld
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import RigidTransform, look_at
from vla_r1_ros.core.lifting import GraspSurface
from vla_r1_ros.core.outcomes import OutcomeSource, is_judged
from vla_r1_ros.core.planning import MotionSegment, PlanningParams, PlanRejected, SafetyLimits, plan_pick_and_place
from vla_r1_ros.core.self_reset import Hand, ResetSettings, put_down_plan
from vla_r1_ros.executors.base import validate_for

SETTINGS = load_config("moveit_py")["vla_r1"]
WORKSPACE, WORKCELL, CAMERA = load_config("workspace"), load_config("workcell"), load_config("camera")
LIMITS = SafetyLimits.from_config(WORKSPACE)
START = RigidTransform.from_pose([0.31, 0.0, 0.49], [1.0, 0.0, 0.0, 0.0])  # the Panda's ready pose, TCP
CUBE = GraspSurface(np.array([0.5, 0.0, 0.05]), np.array([0, 0, 1.0]), np.array([1.0, 0, 0]), 0.05, 0.05, 0.05, 9)


@pytest.fixture
def fake_moveit(monkeypatch):
    """The double installed as the `moveit` and `moveit_msgs` packages: (MoveItPy, its World)."""
    moveit, world = double.install(monkeypatch)
    yield moveit, world
    world.close()


def make_executor(fake, camera=CAMERA):
    from vla_r1_ros.executors.moveit import MoveItExecutor

    return MoveItExecutor(fake, SETTINGS, CollisionWorld.from_config(WORKCELL, camera))


def at_start(executor):
    """Put the double's arm at the ready pose; returns its joints."""
    q0 = executor.solve_ik(START.translation, START.quat_xyzw, np.array([0, -0.785, 0, -2.356, 0, 1.571, 0.785]))
    assert q0 is not None
    executor.moveit.get_planning_scene_monitor()  # the same monitor the executor reads
    double.WORLD.arm_q = q0
    return q0


def validated_plan(executor, grasp=CUBE, waypoints=None, params=None):
    waypoints = np.linspace([0.5, 0.0, 0.05], [0.45, 0.3, 0.0], 3) if waypoints is None else waypoints
    plan = plan_pick_and_place(grasp, waypoints, params or PlanningParams.from_config(WORKSPACE))
    at_start(executor)
    return validate_for(executor, plan, LIMITS)


def test_ik_pose_is_for_panda_link8(fake_moveit):
    executor = make_executor(fake_moveit[0])
    tcp = RigidTransform.from_pose([0.5, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0])  # top-down
    pose = executor.link_pose(tcp)
    link8 = RigidTransform.from_pose(
        [pose.position.x, pose.position.y, pose.position.z],
        [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w],
    )
    # panda_link8 sits 0.1034 m above a downward TCP, turned 45 degrees about the approach axis.
    np.testing.assert_allclose(link8.translation, [0.5, 0.1, 0.1 + 0.1034], atol=1e-9)
    tcp_again = link8 @ RigidTransform.from_config(SETTINGS["tcp_in_pose_link"])
    np.testing.assert_allclose(tcp_again.as_matrix(), tcp.as_matrix(), atol=1e-9)
    angle = np.degrees((tcp.rotation.inv() * link8.rotation).magnitude())
    assert angle == pytest.approx(45.0)


def test_ik_goes_through_robot_state_set_from_ik(fake_moveit):
    executor = make_executor(fake_moveit[0])
    tcp = RigidTransform.from_pose([0.5, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0])
    q = executor.solve_ik(tcp.translation, tcp.quat_xyzw, np.array([0, -0.785, 0, -2.356, 0, 1.571, 0.785]))
    link8 = fake_moveit[1].link8_pose(q)  # PyBullet's forward kinematics of the answer
    goal = executor.link_pose(tcp)
    np.testing.assert_allclose(link8.translation, [goal.position.x, goal.position.y, goal.position.z], atol=0.005)


def arm_runs(world):
    """(joint waypoints, controllers) of every arm trajectory the double executed."""
    return [
        (np.array([p.positions for p in c[3].joint_trajectory.points]), c[4])
        for c in world.calls
        if c[1] == "execute" and c[2] == "panda_arm"
    ]


def executed_groups(world):
    return ["arm" if c[2] == "panda_arm" else "hand" for c in world.calls if c[1] == "execute"]


def test_the_arm_runs_exactly_the_validated_joint_path(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    world.object_width_m = 0.05
    result = executor.execute(validated, lambda: False)
    assert result.success, result.message
    # The motion ran; whether the object is in the tray nobody knows yet: not counted in a success rate.
    assert result.outcome_source == OutcomeSource.NONE and not is_judged(result.outcome_source, result.failure_stage)

    segments = [s for s in validated.steps if isinstance(s, MotionSegment)]
    runs = arm_runs(world)
    assert [s.name for s in segments] == ["approach", "descend", "lift", "carry", "lower", "retreat"]
    assert len(runs) == len(segments)
    start = validated.start_joints
    speed, totg = validated.plan.speed_scaling, SETTINGS["time_parameterization"]
    timings = [c[2:] for c in world.calls if c[1] == "totg"]
    for segment, (waypoints, controllers) in zip(segments, runs, strict=True):
        # Each segment starts where the previous one ended and goes through every checked sample.
        np.testing.assert_array_equal(waypoints, np.vstack([start, segment.joints]))
        assert controllers == ()  # MoveIt picks the controllers
        start = segment.joints[-1]
    assert timings == [(speed, speed, totg["path_tolerance_rad"], totg["resample_dt_s"])] * len(segments)
    # No arm motion is planned anew: only the hand has a planning component that plans.
    assert {c[0] for c in world.calls if c[1] == "plan"} == {"hand"}
    # Nothing is read from the scene after a motion before a joint state newer than its end arrived.
    executes = [i for i, c in enumerate(world.calls) if c[1] == "execute"]
    assert all(world.calls[i + 1][1] == "wait_for_current_robot_state" for i in executes)


def tcp_of(executor, q):
    return (double.WORLD.link8_pose(q) @ executor._link_T_tcp).translation


def test_the_executed_path_is_read_from_joint_states_during_each_motion(fake_moveit):
    """Dense: every waypoint the double's arm passes is seen by the sampler (10 ms each, read every
    1 ms), not one point per segment; and every point is where the start or a validated sample puts the
    TCP."""
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    world.object_width_m, world.playback_period_s, executor.path_sample_period_s = 0.05, 0.01, 0.001
    result = executor.execute(validated, lambda: False)
    assert result.success, result.message
    segments = [s for s in validated.steps if isinstance(s, MotionSegment)]
    samples = np.vstack([s.joints for s in segments])
    assert len(result.ee_path) >= 0.9 * len(samples) > 2 * len(segments)
    # The sampler may read the arm before the first waypoint's state arrives: the start is a point too.
    reachable = np.array([tcp_of(executor, q) for q in (validated.start_joints, *samples)])
    for point in result.ee_path:
        assert np.min(np.linalg.norm(reachable - point, axis=1)) < 1e-6
    np.testing.assert_allclose(result.ee_path[-1], reachable[-1], atol=1e-6)  # it ends where the plan does


def test_gripper_opens_first_closes_after_the_descent_and_opens_at_the_place(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    world.object_width_m = 0.05
    assert executor.execute(validated_plan(executor), lambda: False).success
    hand = [c[2] for c in world.calls if c[1] == "set_goal_state"]
    assert hand == ["open", "close", "open"]
    assert executed_groups(world) == ["hand", "arm", "arm", "hand", "arm", "arm", "arm", "hand", "arm"]
    kinds = [c[1] for c in world.calls if c[0] == "hand"][:3]
    assert kinds == ["set_start_state_to_current_state", "set_goal_state", "plan"]


def test_a_put_down_keeps_the_hand_closed_until_the_place(fake_moveit):
    """The self-reset's put-down of an object still in the hand: no "open" before the motion (it would
    drop the object wherever the arm stands); the fingers close on it again and open at the place."""
    fake, world = fake_moveit
    executor = make_executor(fake)
    world.object_width_m = 0.05
    at_start(executor)
    settings = ResetSettings.from_config(WORKSPACE, CAMERA, executor.gripper_opening_m)
    hand = Hand(executor.tcp_pose(), 0.05)
    plan = put_down_plan(hand, 0.05, np.array([0.45, 0.1]), settings)
    result = executor.execute(validate_for(executor, plan, LIMITS), lambda: False)
    assert result.success, result.message
    assert [c[2] for c in world.calls if c[1] == "set_goal_state"] == ["close", "open"]


def test_an_empty_grasp_ends_at_grasp_and_the_arm_backs_up(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    # The fingers close on nothing: the hand's joint states read 0 mm — once they reach the scene, 30 ms
    # after the motion (the double's state monitor); read at once, they would still say "open", held.
    world.object_width_m = None
    result = executor.execute(validated, lambda: False)
    assert not result.success and result.failure_stage == "grasp"
    assert "closed to 0 mm" in result.message and "nothing between the fingers" in result.message
    # The one verdict a real arm gives by itself: the gripper says that grasp failed.
    assert result.outcome_source == "gripper" and is_judged(result.outcome_source, result.failure_stage)
    # Open again, then back up the checked descent to the pre-grasp pose; no lift, carry or place.
    assert [c[2] for c in world.calls if c[1] == "set_goal_state"] == ["open", "close", "open"]
    assert executed_groups(world) == ["hand", "arm", "arm", "hand", "hand", "arm"]
    np.testing.assert_allclose(world.arm_q, validated.steps[0].joints[-1])


def test_an_object_slipping_out_during_the_carry_ends_at_grasp_judged_by_the_gripper(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    world.object_width_m, world.slip_segment = 0.05, 3  # approach, descend, lift, carry: lost on the way
    result = executor.execute(validated, lambda: False)
    assert not result.success and result.failure_stage == "grasp"
    assert "slipped out of the gripper during carry" in result.message and "closed to 0 mm" in result.message
    assert result.outcome_source == "gripper" and is_judged(result.outcome_source, result.failure_stage)
    assert len(arm_runs(world)) == 4  # no lower, no release: nothing is placed
    assert [c[2] for c in world.calls if c[1] == "set_goal_state"] == ["open", "close"]


def test_joint_states_that_stop_end_the_trial_at_execute_before_the_arm_moves(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    world.joint_states_flowing, executor.state_wait_s = False, 0.05
    result = executor.execute(validated, lambda: False)
    assert not result.success and result.failure_stage == "execute"
    assert "no joint state newer than the end of gripper open within 0.05 s" in result.message
    assert arm_runs(world) == [] and result.outcome_source == OutcomeSource.NONE


def test_a_grasp_on_a_thin_object_is_held(fake_moveit):
    """The threshold comes from moveit_py.yaml: a width just above it counts as held."""
    fake, world = fake_moveit
    executor = make_executor(fake)
    world.object_width_m = SETTINGS["min_held_width_m"] + 0.002
    assert executor.execute(validated_plan(executor), lambda: False).success


def test_the_workcell_is_in_moveits_planning_scene(fake_moveit):
    fake, _ = fake_moveit
    executor = make_executor(fake)
    with fake.get_planning_scene_monitor().read_only() as scene:
        ids = set(scene._objects)  # the double's record of applied CollisionObjects
    assert ids == {box.name for box in executor.obstacles}
    assert {"table", "camera_housing", "camera_pole", "tray_floor", "tray_wall_-y"} <= ids


def tray_drag(executor):
    """A cube carried 4.5 cm above the table straight into the (configured) tray: through its -y wall."""
    tray = WORKCELL["collision"]["tray_when_unseen"]["centre_base"]
    # The path starts at the object (the carry convention): the transport is what follows it.
    waypoints = np.array([CUBE.point, [0.45, 0.10, 0.0], [tray[0], tray[1], 0.008]])
    params = PlanningParams(**{**WORKSPACE["planning"], "carry_height_m": 0.045})
    return plan_pick_and_place(CUBE, waypoints, params)


def test_a_plan_through_the_tray_wall_is_refused_by_the_planning_scene(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    before = at_start(executor)
    with pytest.raises(PlanRejected) as rejected:
        validate_for(executor, tray_drag(executor), LIMITS)
    assert rejected.value.check == "collision"
    assert re.search(r"(panda_\w+|held_object) collides with tray_wall_-y", rejected.value.reason), rejected.value
    assert world.is_state_colliding_calls > 0  # MoveIt's own check decided
    assert [c for c in world.calls if c[1] == "execute"] == []  # nothing moved
    np.testing.assert_array_equal(world.arm_q, before)


def test_a_plan_through_the_camera_mount_is_refused_by_the_planning_scene(fake_moveit):
    fake, world = fake_moveit
    camera = copy.deepcopy(CAMERA)  # the camera beside the workspace: its pole within reach
    pose = look_at([0.45, -0.42, 0.45], [0.45, 0.0, 0.0])
    camera["extrinsics"] = {"translation": pose.translation.tolist(), "rotation_xyzw": pose.quat_xyzw.tolist()}
    executor = make_executor(fake, camera)
    pole = next(b for b in executor.obstacles if b.name == "camera_pole")
    via = [[pole.pose.translation[0], y, 0.0] for y in (-0.27, pole.pose.translation[1] + 0.01)]
    back = [[0.45, y, 0.0] for y in (-0.2, 0.05, 0.3)]  # then into the tray, in steps the validator allows
    plan = plan_pick_and_place(CUBE, np.array([CUBE.point, *via, *back]), PlanningParams.from_config(WORKSPACE))
    at_start(executor)
    with pytest.raises(PlanRejected) as rejected:
        validate_for(executor, plan, LIMITS)
    assert rejected.value.check == "collision"
    assert re.search(r"panda_\w+ collides with camera_(pole|housing)", rejected.value.reason), rejected.value
    assert [c for c in world.calls if c[1] == "execute"] == []


def test_an_arm_that_moved_since_validation_does_not_start(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    world.arm_q = validated.start_joints + np.array([0.0, 0.1, 0, 0, 0, 0, 0])  # someone moved it
    result = executor.execute(validated, lambda: False)
    assert not result.success and result.failure_stage == "execute"
    assert "moved 0.100 rad since validation" in result.message
    assert result.outcome_source == "none" and not is_judged(result.outcome_source, result.failure_stage)
    assert executed_groups(world) == []


def test_a_blocked_segment_stops_the_sequence(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    world.stall_segment = 1  # the descent stops at once
    result = executor.execute(validated, lambda: False)
    assert not result.success and result.failure_stage == "execute"
    assert result.message.startswith("descend: the arm stopped")
    assert result.outcome_source == "none" and not is_judged(result.outcome_source, result.failure_stage)
    assert executed_groups(world) == ["hand", "arm", "arm"]  # open the hand, the approach, the blocked descent


def test_a_path_totg_cannot_time_never_runs(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    world.untimeable = True
    result = executor.execute(validated, lambda: False)
    assert result.failure_stage == "execute" and "TOTG" in result.message
    assert executed_groups(world) == ["hand"]  # only the hand opened


def test_stop_halts_execution(fake_moveit):
    fake, world = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    executor.stop()
    assert world.stops == 1  # the trajectory execution manager was told to stop
    result = executor.execute(validated, lambda: True)
    assert result.failure_stage == "cancelled" and result.outcome_source == "none"
    assert executed_groups(world) == []


def test_the_double_exposes_only_jazzy_names():
    for cls in double.DOUBLES:
        api = double.JAZZY_API["RobotTrajectoryMsg" if cls is double.RobotTrajectoryMsg else cls.__name__]
        public = {name for name in dir(cls) if not name.startswith("_")}
        assert public <= api, f"{cls.__name__} has names moveit_py/moveit_msgs (Jazzy) lack: {public - api}"
        assert "__slots__" in vars(cls), f"{cls.__name__} would accept any attribute"


def test_a_misspelt_moveit_py_call_fails_against_the_double(fake_moveit):
    from vla_r1_ros.executors.moveit import MoveItExecutor

    fake, world = fake_moveit

    class Misspelt(MoveItExecutor):
        def stop(self) -> None:  # the spelling the executor used before Jazzy's sources were read
            self.moveit.get_trajactory_execution_manager().stop_execution()

    with pytest.raises(AttributeError, match="get_trajactory_execution_manager"):
        Misspelt(fake, SETTINGS, CollisionWorld.from_config(WORKCELL, CAMERA)).stop()
    make_executor(fake).stop()  # the real name works
    assert world.stops == 1
    trajectory = double.RobotTrajectory(double.RobotModel())
    with pytest.raises(AttributeError):
        trajectory.joint_model_group = "panda_arm"  # a misspelt property is not silently created
    with pytest.raises(AttributeError):
        double.CollisionObject().primitive_pose = []  # nor a misspelt message field


def test_refuses_an_unvalidated_plan(fake_moveit):
    executor = make_executor(fake_moveit[0])
    with pytest.raises(TypeError):
        executor.execute(validated_plan(executor).plan, lambda: False)


def test_without_moveit_py_the_backend_says_how_to_get_it(monkeypatch):
    from vla_r1_ros.executors import moveit as backend

    monkeypatch.setitem(sys.modules, "moveit", None)  # import moveit -> ImportError
    with pytest.raises(backend.MoveItUnavailable, match="moveit"):
        backend.MoveItExecutor(object(), SETTINGS, CollisionWorld.from_config(WORKCELL, CAMERA))
    with pytest.raises(backend.MoveItUnavailable, match="apt install"):
        backend.make_moveit_py("moveit_py.yaml", SETTINGS)


def test_a_held_object_hitting_the_tray_wall_is_refused_by_the_planning_scene(fake_moveit):
    """The hand clears the tray's -y wall, the tall object it holds does not. MoveIt (and the double,
    after moveit2 jazzy's planning_scene.cpp) keeps an attached body in the scene's current state, so
    only a check of that state sees it; a fresh RobotState would pass this plan."""
    fake, world = fake_moveit
    executor = make_executor(fake)
    tall = GraspSurface(np.array([0.5, 0.0, 0.10]), np.array([0, 0, 1.0]), np.array([1.0, 0, 0]), 0.10, 0.05, 0.05, 9)
    tray = WORKCELL["collision"]["tray_when_unseen"]["centre_base"]
    waypoints = np.array([[0.5, 0.0, 0.0], [0.47, 0.10, 0.0], [tray[0], tray[1], 0.008]])
    # 12 cm above the table: the fingertips pass the 6 cm wall, the object's bottom (8 cm below the
    # TCP) does not.
    params = PlanningParams(**{**WORKSPACE["planning"], "carry_height_m": 0.12})
    plan = plan_pick_and_place(tall, waypoints, params)
    at_start(executor)
    with pytest.raises(PlanRejected) as rejected:
        validate_for(executor, plan, LIMITS)
    assert rejected.value.check == "collision"
    assert re.search(r"held_object collides with tray_wall_-y", rejected.value.reason), rejected.value
    assert [c for c in world.calls if c[1] == "execute"] == []
    # A flat object carried the same way passes: the hand itself clears the wall.
    flat = GraspSurface(np.array([0.5, 0.0, 0.03]), tall.up, tall.axis, 0.03, 0.05, 0.05, 9)
    validate_for(executor, plan_pick_and_place(flat, waypoints, params), LIMITS)


def test_the_doctor_cycles_the_empty_gripper_through_its_named_states(fake_moveit):
    """`vla-r1 doctor`'s gripper check on MoveIt: open, close, open through the hand group's named states,
    each width read from the planning scene monitor's current state (the Franka hand's joint states)."""
    fake, world = fake_moveit
    executor = make_executor(fake)
    world.object_width_m = None  # nothing between the fingers
    opened, closed = executor.cycle_gripper()
    assert [c[2] for c in world.calls if c[1] == "set_goal_state"] == ["open", "close", "open"]
    assert opened == pytest.approx(SETTINGS["gripper_opening_m"]) and closed < SETTINGS["min_held_width_m"]


def test_the_doctor_finds_every_name_the_config_gives_moveit(fake_moveit):
    fake, _ = fake_moveit
    assert make_executor(fake).configuration_problems() == []


def test_the_doctor_names_each_group_link_state_and_controller_the_robot_lacks(fake_moveit):
    """A config written for another robot's MoveIt setup, and a hand whose controller is not running."""
    fake, world = fake_moveit
    from vla_r1_ros.executors.moveit import MoveItExecutor

    settings = copy.deepcopy(SETTINGS)
    settings["observe_state"] = "look_at_table"
    settings["collision"]["hand_touch_links"] = ["panda_hand", "fr3_leftfinger"]
    settings["joint_limits"]["names"] = [f"fr3_joint{i}" for i in range(1, 8)]
    world.controlled_groups = {"panda_arm"}
    executor = MoveItExecutor(fake, settings, CollisionWorld.from_config(WORKCELL, CAMERA))
    assert executor.configuration_problems() == [
        "group 'panda_arm' moves ['panda_joint1', 'panda_joint2', 'panda_joint3', 'panda_joint4', 'panda_joint5', "
        "'panda_joint6', 'panda_joint7'], not joint_limits.names ['fr3_joint1', 'fr3_joint2', 'fr3_joint3', "
        "'fr3_joint4', 'fr3_joint5', 'fr3_joint6', 'fr3_joint7']",
        "no active controller moves group 'hand'",
        "link 'fr3_leftfinger' is in neither group",
        "no SRDF state 'look_at_table' for group 'panda_arm'",
    ]
    settings["hand_group"] = "gripper"
    assert (
        "no joint model group 'gripper' in the robot's SRDF"
        in MoveItExecutor(fake, settings, CollisionWorld.from_config(WORKCELL, CAMERA)).configuration_problems()
    )


def test_the_observe_pose_is_planned_by_moveit_to_the_srdf_state_and_the_fingers_are_read(fake_moveit):
    """The camera judge's observe pose on a real arm: the arm group planned to config/moveit_py.yaml's
    `observe_state` (panda.srdf "ready") from the current state, then executed (the double: moveit2 jazzy
    PlanningComponent.set_goal_state(configuration_name=…) / plan / MoveItPy.execute)."""
    moveit, world = fake_moveit
    executor = make_executor(moveit)
    at_start(executor)
    world.calls.clear()
    assert executor.observe(lambda: False) == ""
    arm_calls = [c[1:] for c in world.calls if c[0] == "panda_arm"]
    assert arm_calls == [("set_start_state_to_current_state",), ("set_goal_state", "ready"), ("plan",)]
    assert np.allclose(executor.joint_positions(), double.ARM_STATES["ready"])
    assert executor.finger_width() == pytest.approx(0.08)  # the hand is open
    assert executor.observe(lambda: True) == "stopped before the observe pose"


def test_the_depth_clutter_and_the_measured_tray_are_collision_objects_of_the_checked_scene(fake_moveit):
    """What the trial's depth saw reaches MoveIt's own check: a clutter box where the plan's descent goes
    refuses it, named, while the live planning scene keeps none of it; a measured tray replaces the
    configured one on the checked copy (the same ids)."""
    from vla_r1_ros.core.collision import SeenObstacles
    from vla_r1_ros.core.tray import TrayPose

    fake, _ = fake_moveit
    executor = make_executor(fake)
    at_start(executor)
    plan = plan_pick_and_place(
        CUBE, np.linspace([0.5, 0.0, 0.05], [0.45, 0.3, 0.0], 3), PlanningParams.from_config(WORKSPACE)
    )
    beside = Box(
        "depth_clutter_0", np.array([0.04, 0.04, 0.12]), RigidTransform.from_pose([0.5, 0.05, 0.06], [0, 0, 0, 1])
    )
    with pytest.raises(PlanRejected) as rejected:
        validate_for(executor, plan, LIMITS, None, SeenObstacles(None, (beside,)))
    assert rejected.value.check == "collision"
    assert re.search(r"(panda_\w+|held_object) collides with depth_clutter_0", rejected.value.reason), rejected.value
    assert validate_for(executor, plan, LIMITS).plan is not None  # the live scene kept nothing of it
    with fake.get_planning_scene_monitor().read_only() as live:
        assert "depth_clutter_0" not in live._objects
    # The tray measured with its -y wall right under the cube's descent.
    under = TrayPose(np.array([0.5, 0.12, 0.03]), np.array([0.24, 0.24, 0.06]), 0.0)
    with pytest.raises(PlanRejected) as rejected:
        validate_for(executor, plan, LIMITS, None, SeenObstacles(under))
    assert re.search(r"collides with tray_wall_-y", rejected.value.reason), rejected.value


def test_the_arm_chain_comes_from_the_planning_scene_state(fake_moveit):
    """The region depth clutter leaves out follows the arm as MoveIt has it (get_global_link_transform)."""
    executor = make_executor(fake_moveit[0])
    at_start(executor)
    chain = executor.arm_chain()
    assert chain.shape == (len(WORKCELL["collision"]["depth_clutter"]["arm_links"]) + 2, 3)
    np.testing.assert_allclose(chain[0], 0.0)
    np.testing.assert_allclose(chain[-1], START.translation, atol=0.005)  # ends at the TCP
    assert 0.3 < chain[-2][2] < 0.7  # panda_hand, above the TCP at the ready pose
