"""The MoveIt executor against a TEST DOUBLE of moveit_py.

moveit_py (MoveIt 2's Python API) cannot be installed on this machine, so these tests do NOT talk to
MoveIt: they install fake `moveit.planning` / `moveit.core.robot_state` modules whose MoveItPy,
PlanningComponent, RobotState and PlanRequestParameters record every call. What they check is our
side of the contract: pose-goal construction (TCP pose -> panda_link8 PoseStamped in panda_link0),
the call sequence per goal (set_start_state_to_current_state, set_goal_state(pose_stamped_msg=…,
pose_link=…), plan(single_plan_parameters=…), execute(trajectory, controllers=[])), the gripper's
named states, speed scaling, failure mapping and stop. A lab checks the real thing (docs/planning.md).
"""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import pytest
from geometry_msgs.msg import Pose

from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.lifting import GraspSurface
from vla_r1_ros.core.planning import PlanningParams, SafetyLimits, plan_pick_and_place, validate_plan

SETTINGS = load_config("moveit_py")["vla_r1"]


class Recorder:
    def __init__(self):
        self.calls: list[tuple] = []
        self.fail_plans_for: set[int] = set()  # indices of arm goals whose plan() fails


class FakePlanningComponent:
    def __init__(self, name, recorder):
        self.name, self.recorder = name, recorder
        self.goals = 0

    def set_start_state_to_current_state(self):
        self.recorder.calls.append((self.name, "set_start_state_to_current_state"))

    def set_goal_state(self, **kwargs):
        self.recorder.calls.append((self.name, "set_goal_state", kwargs))

    def plan(self, single_plan_parameters=None):
        self.recorder.calls.append((self.name, "plan", single_plan_parameters))
        index, self.goals = self.goals, self.goals + 1
        if self.name == "panda_arm" and index in self.recorder.fail_plans_for:
            return None
        return types.SimpleNamespace(trajectory=f"{self.name}-trajectory-{index}")


class FakeState:
    """RobotState double: IK 'solves' to joints that vary smoothly with the goal position."""

    def __init__(self, robot_model=None):
        self.q = np.zeros(7)

    def set_joint_group_positions(self, group, q):
        self.q = np.asarray(q, float)

    def set_from_ik(self, group, pose, tip, timeout):
        assert isinstance(pose, Pose) and tip == "panda_link8" and group == "panda_arm"
        self.q = np.array([pose.position.x, pose.position.y, pose.position.z, -1.5, 0.0, 1.5, 0.0])
        return True

    def get_joint_group_positions(self, group):
        return self.q

    def get_pose(self, link):
        return Pose()  # panda_link8 at the base origin


class FakePlanRequestParameters:
    def __init__(self, moveit, namespace):
        self.namespace = namespace
        self.max_velocity_scaling_factor = 1.0
        self.max_acceleration_scaling_factor = 1.0


class FakeStatus:
    status = "SUCCEEDED"

    def __bool__(self):
        return True


class FakeMoveItPy:
    def __init__(self, recorder):
        self.recorder = recorder
        self.components = {}
        self.stopped = 0

    def get_planning_component(self, name):
        return self.components.setdefault(name, FakePlanningComponent(name, self.recorder))

    def get_robot_model(self):
        return "panda-model"

    def get_planning_scene_monitor(self):
        @contextlib.contextmanager
        def read_only():
            yield types.SimpleNamespace(current_state=FakeState())

        return types.SimpleNamespace(read_only=read_only)

    def execute(self, trajectory, controllers):
        self.recorder.calls.append(("robot", "execute", trajectory, tuple(controllers)))
        return FakeStatus()

    def get_trajactory_execution_manager(self):  # sic: moveit_py's spelling
        return types.SimpleNamespace(stop_execution=lambda: setattr(self, "stopped", self.stopped + 1))


@pytest.fixture
def fake_moveit(monkeypatch):
    """Install the double as the `moveit` package for the executor's imports."""
    moveit = types.ModuleType("moveit")
    planning = types.ModuleType("moveit.planning")
    core = types.ModuleType("moveit.core")
    robot_state = types.ModuleType("moveit.core.robot_state")
    planning.PlanRequestParameters = FakePlanRequestParameters
    planning.MoveItPy = FakeMoveItPy
    robot_state.RobotState = FakeState
    for name, module in {
        "moveit": moveit,
        "moveit.planning": planning,
        "moveit.core": core,
        "moveit.core.robot_state": robot_state,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    recorder = Recorder()
    return FakeMoveItPy(recorder), recorder


def make_executor(fake):
    from vla_r1_ros.executors.moveit import MoveItExecutor

    return MoveItExecutor(fake, SETTINGS)


def validated_plan(executor):
    workspace = load_config("workspace")
    grasp = GraspSurface(np.array([0.5, 0.0, 0.05]), np.array([0, 0, 1.0]), np.array([1.0, 0, 0]), 0.05, 0.05, 0.05, 9)
    plan = plan_pick_and_place(
        grasp, np.linspace([0.5, 0.0, 0.05], [0.45, 0.3, 0.0], 3), PlanningParams.from_config(workspace)
    )
    start = RigidTransform.from_pose([0.31, 0.0, 0.49], [1.0, 0.0, 0.0, 0.0])
    q0 = executor.solve_ik(start.translation, start.quat_xyzw)
    return validate_plan(
        plan,
        SafetyLimits.from_config(workspace),
        executor.solve_ik,
        executor.joint_limits(),
        executor.joint_names,
        q0,
        start,
    )


def test_pose_goal_is_for_panda_link8_in_the_base_frame(fake_moveit):
    executor = make_executor(fake_moveit[0])
    tcp = RigidTransform.from_pose([0.5, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0])  # top-down
    goal = executor.goal_pose(tcp)
    assert goal.header.frame_id == "panda_link0"
    link8 = RigidTransform.from_pose(
        [goal.pose.position.x, goal.pose.position.y, goal.pose.position.z],
        [goal.pose.orientation.x, goal.pose.orientation.y, goal.pose.orientation.z, goal.pose.orientation.w],
    )
    # panda_link8 sits 0.1034 m above a downward TCP, turned 45 degrees about the approach axis.
    np.testing.assert_allclose(link8.translation, [0.5, 0.1, 0.1 + 0.1034], atol=1e-9)
    tcp_again = link8 @ RigidTransform.from_config(SETTINGS["tcp_in_pose_link"])
    np.testing.assert_allclose(tcp_again.as_matrix(), tcp.as_matrix(), atol=1e-9)
    angle = np.degrees((tcp.rotation.inv() * link8.rotation).magnitude())
    assert angle == pytest.approx(45.0)


def test_ik_goes_through_robot_state_set_from_ik(fake_moveit):
    executor = make_executor(fake_moveit[0])
    q = executor.solve_ik(np.array([0.5, 0.1, 0.1]), np.array([1.0, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(q[:3], [0.5, 0.1, 0.2034], atol=1e-9)  # the double echoes link8's goal


def test_execution_sequence(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    result = executor.execute(validated, lambda: False)
    assert result.success, result.message

    goals = [c for c in recorder.calls if c[1] == "set_goal_state"]
    arm_goals = [c[2] for c in goals if c[0] == "panda_arm"]
    hand_goals = [c[2]["configuration_name"] for c in goals if c[0] == "hand"]
    expected_targets = [
        validated.plan.pre_grasp,
        validated.plan.grasp,
        validated.plan.lift,
        *validated.plan.carry_waypoints,
        validated.plan.place,
        validated.plan.retreat,
    ]
    assert len(arm_goals) == len(expected_targets)
    for goal, target in zip(arm_goals, expected_targets, strict=True):
        assert goal["pose_link"] == "panda_link8"
        assert goal["pose_stamped_msg"] == executor.goal_pose(target)
    assert hand_goals == ["open", "close", "open"]  # open first, close after the descent, open at the place

    # Every goal: start state, goal, plan, execute — in that order; grasp between descend and lift.
    kinds = [(c[0], c[1]) for c in recorder.calls]
    per_goal = [
        ("panda_arm", "set_start_state_to_current_state"),
        ("panda_arm", "set_goal_state"),
        ("panda_arm", "plan"),
    ]
    assert kinds[4:8] == [*per_goal, ("robot", "execute")]  # after the opening of the hand
    order = [c[0] for c in recorder.calls if c[1] == "set_goal_state"]
    assert order == [
        "hand",
        "panda_arm",
        "panda_arm",
        "hand",
        *["panda_arm"] * (len(arm_goals) - 3),
        "hand",
        "panda_arm",
    ]
    plans = [c[2] for c in recorder.calls if c[1] == "plan" and c[0] == "panda_arm"]
    assert [p.namespace for p in plans[:3]] == ["ompl_rrtc", "pilz_lin", "pilz_lin"]
    assert all(p.max_velocity_scaling_factor == validated.plan.speed_scaling for p in plans)
    executes = [c for c in recorder.calls if c[1] == "execute"]
    assert all(c[3] == () for c in executes)  # controllers=[]: MoveIt picks the configured controllers


def test_planning_failure_stops_the_sequence(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    recorder.fail_plans_for = {1}  # the descent to the grasp
    result = executor.execute(validated, lambda: False)
    assert not result.success and result.failure_stage == "ik"
    assert "descend" in result.message
    executed = [c[2] for c in recorder.calls if c[1] == "execute"]
    assert executed == ["hand-trajectory-0", "panda_arm-trajectory-0"]  # open the hand, the approach; no more


def test_stop_halts_execution(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    executor.stop()
    assert fake.stopped == 1  # the trajectory execution manager was told to stop
    result = executor.execute(validated, lambda: True)
    assert result.failure_stage == "cancelled"
    assert not [c for c in recorder.calls if c[1] == "execute"]


def test_refuses_an_unvalidated_plan(fake_moveit):
    executor = make_executor(fake_moveit[0])
    with pytest.raises(TypeError):
        executor.execute(validated_plan(executor).plan, lambda: False)


def test_without_moveit_py_the_backend_says_how_to_get_it(monkeypatch):
    from vla_r1_ros.executors import moveit as backend

    monkeypatch.setitem(sys.modules, "moveit", None)  # import moveit -> ImportError
    with pytest.raises(backend.MoveItUnavailable, match="moveit"):
        backend.MoveItExecutor(object(), SETTINGS)
    with pytest.raises(backend.MoveItUnavailable, match="apt install"):
        backend.make_moveit_py("moveit_py.yaml", SETTINGS)
