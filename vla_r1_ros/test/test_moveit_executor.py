"""The MoveIt executor against a TEST DOUBLE of moveit_py.

moveit_py (MoveIt 2's Python API) and moveit_msgs cannot be installed on this machine, so these tests do
NOT talk to MoveIt: they install fake `moveit.planning`, `moveit.core.robot_state`,
`moveit.core.robot_trajectory` and `moveit_msgs.msg` modules whose MoveItPy, PlanningComponent,
RobotState, RobotTrajectory and RobotTrajectory message record every call, and whose "arm" ends each
executed trajectory at its last waypoint. What they check is our side of the contract, as moveit_py's
Jazzy bindings define it: the arm runs exactly the validator's joint samples (set_robot_trajectory_msg
on the arm group, apply_totg_time_parameterization within the plan's speed scaling,
execute(trajectory, controllers=[])); IK goals are for panda_link8; the gripper goes to its named
states through a planning component; the start-drift and tracking checks; failure mapping and stop.
A lab checks the real thing (docs/planning.md).
"""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import pytest
from geometry_msgs.msg import Pose
from trajectory_msgs.msg import JointTrajectory

from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.lifting import GraspSurface
from vla_r1_ros.core.planning import MotionSegment, PlanningParams, SafetyLimits, plan_pick_and_place, validate_plan

SETTINGS = load_config("moveit_py")["vla_r1"]


class Recorder:
    """What the double saw, and the state of its arm."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.arm_q = np.zeros(7)  # where the arm is (what the planning scene monitor reports)
        self.stall_segment: int | None = None  # this arm trajectory stops after its first sample (a blocked arm)
        self.untimeable = False  # apply_totg_time_parameterization fails
        self.arm_trajectories = 0


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
        self.goals += 1
        return types.SimpleNamespace(trajectory=f"{self.name}-trajectory-{self.goals - 1}")


class FakeState:
    """RobotState double: IK 'solves' to joints that vary smoothly with the goal position."""

    def __init__(self, robot_model=None, q=None):
        self.q = np.zeros(7) if q is None else np.array(q, float)

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


class FakeRobotTrajectory:
    """moveit.core.robot_trajectory.RobotTrajectory double: keeps the message's waypoints."""

    recorder: Recorder  # set by the fixture

    def __init__(self, robot_model):
        assert robot_model == "panda-model"
        self.joint_model_group_name = ""
        self.waypoints: np.ndarray | None = None
        self.totg: tuple | None = None

    def set_robot_trajectory_msg(self, robot_state, msg):
        assert isinstance(robot_state, FakeState)
        assert list(msg.joint_trajectory.joint_names) == SETTINGS["joint_limits"]["names"]
        self.waypoints = np.array([p.positions for p in msg.joint_trajectory.points])

    def apply_totg_time_parameterization(
        self, velocity_scaling_factor, acceleration_scaling_factor, *, path_tolerance=0.1, resample_dt=0.1
    ):
        self.totg = (velocity_scaling_factor, acceleration_scaling_factor, path_tolerance, resample_dt)
        return not self.recorder.untimeable


class FakeRobotTrajectoryMsg:
    """moveit_msgs.msg.RobotTrajectory double: its joint_trajectory is the real trajectory_msgs type."""

    def __init__(self):
        self.joint_trajectory = JointTrajectory()


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
            yield types.SimpleNamespace(current_state=FakeState(q=self.recorder.arm_q))

        return types.SimpleNamespace(read_only=read_only)

    def execute(self, trajectory, controllers):
        self.recorder.calls.append(("robot", "execute", trajectory, tuple(controllers)))
        if isinstance(trajectory, FakeRobotTrajectory):
            path = trajectory.waypoints
            stalled = self.recorder.arm_trajectories == self.recorder.stall_segment
            self.recorder.arm_q = path[1] if stalled else path[-1]
            self.recorder.arm_trajectories += 1
        return FakeStatus()

    def get_trajactory_execution_manager(self):  # sic: moveit_py's spelling
        return types.SimpleNamespace(stop_execution=lambda: setattr(self, "stopped", self.stopped + 1))


@pytest.fixture
def fake_moveit(monkeypatch):
    """Install the double as the `moveit` and `moveit_msgs` packages for the executor's imports."""
    recorder = Recorder()
    modules = {
        name: types.ModuleType(name)
        for name in (
            "moveit",
            "moveit.planning",
            "moveit.core",
            "moveit.core.robot_state",
            "moveit.core.robot_trajectory",
            "moveit_msgs",
            "moveit_msgs.msg",
        )
    }
    modules["moveit.planning"].MoveItPy = FakeMoveItPy
    modules["moveit.core.robot_state"].RobotState = FakeState
    modules["moveit.core.robot_trajectory"].RobotTrajectory = FakeRobotTrajectory
    modules["moveit_msgs.msg"].RobotTrajectory = FakeRobotTrajectoryMsg
    monkeypatch.setattr(FakeRobotTrajectory, "recorder", recorder, raising=False)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
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
    executor.moveit.recorder.arm_q = q0  # the arm is where the plan starts
    return validate_plan(
        plan,
        SafetyLimits.from_config(workspace),
        executor.solve_ik,
        executor.joint_limits(),
        executor.joint_names,
        q0,
        start,
        gripper_opening_m=executor.gripper_opening_m,
    )


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
    q = executor.solve_ik(np.array([0.5, 0.1, 0.1]), np.array([1.0, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(q[:3], [0.5, 0.1, 0.2034], atol=1e-9)  # the double echoes link8's goal


def executed(recorder):
    return [c[2] for c in recorder.calls if c[1] == "execute"]


def test_the_arm_runs_exactly_the_validated_joint_path(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    result = executor.execute(validated, lambda: False)
    assert result.success, result.message

    segments = [s for s in validated.steps if isinstance(s, MotionSegment)]
    arm_runs = [t for t in executed(recorder) if isinstance(t, FakeRobotTrajectory)]
    assert [s.name for s in segments] == ["approach", "descend", "lift", "carry", "lower", "retreat"]
    assert len(arm_runs) == len(segments)
    start = validated.start_joints
    for segment, run in zip(segments, arm_runs, strict=True):
        # Each segment starts where the previous one ended and goes through every checked sample.
        np.testing.assert_array_equal(run.waypoints, np.vstack([start, segment.joints]))
        assert run.joint_model_group_name == "panda_arm"
        speed = validated.plan.speed_scaling
        totg = SETTINGS["time_parameterization"]
        assert run.totg == (speed, speed, totg["path_tolerance_rad"], totg["resample_dt_s"])
        start = segment.joints[-1]
    # No arm motion is planned anew: only the hand has a planning component that plans.
    assert {c[0] for c in recorder.calls if c[1] == "plan"} == {"hand"}
    assert all(c[3] == () for c in recorder.calls if c[1] == "execute")  # MoveIt picks the controllers
    assert len(result.ee_path) == len(segments)


def test_gripper_opens_first_closes_after_the_descent_and_opens_at_the_place(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    assert executor.execute(validated_plan(executor), lambda: False).success
    hand = [c[2]["configuration_name"] for c in recorder.calls if c[1] == "set_goal_state"]
    assert hand == ["open", "close", "open"]
    order = ["arm" if isinstance(t, FakeRobotTrajectory) else "hand" for t in executed(recorder)]
    assert order == ["hand", "arm", "arm", "hand", "arm", "arm", "arm", "hand", "arm"]
    kinds = [c[1] for c in recorder.calls if c[0] == "hand"][:3]
    assert kinds == ["set_start_state_to_current_state", "set_goal_state", "plan"]


def test_an_arm_that_moved_since_validation_does_not_start(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    recorder.arm_q = validated.start_joints + np.array([0.0, 0.1, 0, 0, 0, 0, 0])  # someone moved it
    result = executor.execute(validated, lambda: False)
    assert not result.success and result.failure_stage == "execute"
    assert "moved 0.100 rad since validation" in result.message
    assert executed(recorder) == []


def test_a_blocked_segment_stops_the_sequence(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    recorder.stall_segment = 1  # the descent stops at once
    result = executor.execute(validated, lambda: False)
    assert not result.success and result.failure_stage == "execute"
    assert result.message.startswith("descend: the arm stopped")
    assert len(executed(recorder)) == 3  # open the hand, the approach, the blocked descent; no grasp


def test_a_path_totg_cannot_time_never_runs(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    recorder.untimeable = True
    result = executor.execute(validated, lambda: False)
    assert result.failure_stage == "execute" and "TOTG" in result.message
    assert executed(recorder) == ["hand-trajectory-0"]  # only the hand opened


def test_stop_halts_execution(fake_moveit):
    fake, recorder = fake_moveit
    executor = make_executor(fake)
    validated = validated_plan(executor)
    executor.stop()
    assert fake.stopped == 1  # the trajectory execution manager was told to stop
    result = executor.execute(validated, lambda: True)
    assert result.failure_stage == "cancelled"
    assert executed(recorder) == []


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
