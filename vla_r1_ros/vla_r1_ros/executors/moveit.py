"""MoveIt 2 as an `ArmExecutor`, through moveit_py (MoveItPy), for a real or ros2_control Panda.

moveit_py exists only on a machine with MoveIt 2 installed (apt `ros-jazzy-moveit-py`); this module
imports it only when an executor is made, so the rest of the package works without it (the tests
exercise this class against a recording double of moveit_py). Settings: config/moveit_py.yaml
(section `vla_r1`), which is also the moveit_cpp file handed to MoveItPy.

The arm follows the joint path the validator checked, not a path MoveIt plans anew: every motion
segment of the `ValidatedPlan` becomes a `moveit.core.robot_trajectory.RobotTrajectory` (its IK samples
as waypoints, `set_robot_trajectory_msg`), timed by TOTG (`apply_totg_time_parameterization`, within the
plan's speed scaling) and run with `MoveItPy.execute(trajectory, controllers=[])`. Before the first
segment the arm must still be where validation found it, and after each one it must have reached the
segment's last sample (the plan's start and tracking tolerances). The gripper moves to the "hand"
group's named states ("open", "close" in moveit_resources_panda's SRDF) through a planning component,
as moveit2_tutorials' motion_planning_python_api does: `set_start_state_to_current_state()`,
`set_goal_state(configuration_name=…)`, `plan()`, `execute`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from geometry_msgs.msg import Pose
from trajectory_msgs.msg import JointTrajectoryPoint

from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.planning import GripperAction, JointLimits, MotionSegment, ValidatedPlan
from vla_r1_ros.executors.base import ExecutionResult, require_validated


class MoveItUnavailable(RuntimeError):
    """moveit_py (or moveit_configs_utils) is not installed: the `moveit` executor needs a MoveIt 2 install."""


def _pose_msg(transform: RigidTransform) -> Pose:
    msg = Pose()
    msg.position.x, msg.position.y, msg.position.z = (float(v) for v in transform.translation)
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = (float(v) for v in transform.quat_xyzw)
    return msg


def _transform(msg: Pose) -> RigidTransform:
    o = msg.orientation
    return RigidTransform.from_pose([msg.position.x, msg.position.y, msg.position.z], [o.x, o.y, o.z, o.w])


def make_moveit_py(moveit_py_yaml: str, settings: dict[str, Any], node_name: str = "vla_r1_moveit_py") -> Any:
    """A real MoveItPy for the Panda of moveit_resources_panda_moveit_config, as the tutorial's launch
    file builds it, with our moveit_py.yaml as the moveit_cpp configuration."""
    try:
        from moveit.planning import MoveItPy
        from moveit_configs_utils import MoveItConfigsBuilder
    except ImportError as exc:
        raise MoveItUnavailable(
            "the moveit executor needs moveit_py and moveit_configs_utils (apt install ros-jazzy-moveit-py "
            "ros-jazzy-moveit-configs-utils ros-jazzy-moveit-resources-panda-moveit-config); "
            "use executor:=sim without MoveIt"
        ) from exc
    builder = MoveItConfigsBuilder(robot_name=settings["robot_name"], package_name=settings["moveit_config_package"])
    config = (
        builder.robot_description(file_path=settings["robot_description_file"])
        .trajectory_execution(file_path=settings["trajectory_execution_file"])
        .moveit_cpp(file_path=moveit_py_yaml)
        .to_moveit_configs()
    )
    return MoveItPy(node_name=node_name, config_dict=config.to_dict())


class MoveItExecutor:
    name = "moveit"

    def __init__(self, moveit: Any, settings: dict[str, Any]):
        """`moveit`: a MoveItPy (see `make_moveit_py`); `settings`: the `vla_r1` section of moveit_py.yaml."""
        try:
            from moveit.core.robot_state import RobotState
            from moveit.core.robot_trajectory import RobotTrajectory
            from moveit_msgs.msg import RobotTrajectory as RobotTrajectoryMsg
        except ImportError as exc:
            raise MoveItUnavailable("moveit_py is not installed (moveit.core, moveit_msgs)") from exc
        self._robot_state_type = RobotState
        self._trajectory_type = RobotTrajectory
        self._trajectory_msg_type = RobotTrajectoryMsg
        self.moveit = moveit
        self.group = settings["planning_group"]
        self.hand_group = settings["hand_group"]
        self.pose_link = settings["pose_link"]
        self.gripper_states = dict(settings["gripper_states"])
        self.gripper_opening_m = float(settings["gripper_opening_m"])
        self.ik_timeout_s = float(settings["ik_timeout_s"])
        self.totg = dict(settings["time_parameterization"])
        limits = settings["joint_limits"]
        self.joint_names = tuple(limits["names"])
        self._limits = JointLimits(
            np.asarray(limits["lower"], float),
            np.asarray(limits["upper"], float),
            np.asarray(limits["max_velocity"], float),
        )
        # Plan poses are of the TCP; MoveIt's IK is for pose_link: base_T_link = base_T_tcp · (link_T_tcp)^-1.
        self._link_T_tcp = RigidTransform.from_config(settings["tcp_in_pose_link"])
        self._hand = moveit.get_planning_component(self.hand_group)
        self._stop = threading.Event()

    # --- kinematics for the validator ------------------------------------------------------------

    def joint_limits(self) -> JointLimits:
        return self._limits

    def joint_positions(self) -> np.ndarray:
        with self.moveit.get_planning_scene_monitor().read_only() as scene:
            return np.asarray(scene.current_state.get_joint_group_positions(self.group), dtype=float)

    def tcp_pose(self) -> RigidTransform:
        with self.moveit.get_planning_scene_monitor().read_only() as scene:
            link_pose = _transform(scene.current_state.get_pose(self.pose_link))
        return link_pose @ self._link_T_tcp

    def link_pose(self, tcp: RigidTransform) -> Pose:
        """The pose of `pose_link` that puts the TCP at `tcp`; both in the robot model's root frame, which
        is the plans' base frame (camera.yaml `frames.base`)."""
        return _pose_msg(tcp @ self._link_T_tcp.inverse())

    def solve_ik(
        self, position: np.ndarray, quat_xyzw: np.ndarray, seed_joints: np.ndarray | None = None
    ) -> np.ndarray | None:
        state = self._robot_state_type(self.moveit.get_robot_model())
        if seed_joints is not None:
            state.set_joint_group_positions(self.group, np.asarray(seed_joints, dtype=float))
        goal = self.link_pose(RigidTransform.from_pose(position, quat_xyzw))
        if not state.set_from_ik(self.group, goal, self.pose_link, self.ik_timeout_s):
            return None
        return np.asarray(state.get_joint_group_positions(self.group), dtype=float)

    # --- execution --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        manager = self.moveit.get_trajactory_execution_manager()  # moveit_py's own spelling (Jazzy)
        manager.stop_execution()

    def segment_trajectory(self, plan: ValidatedPlan, segment: MotionSegment, from_joints: np.ndarray) -> Any:
        """The validated samples of `segment`, starting at `from_joints`, as a RobotTrajectory of the arm
        group timed by TOTG within the plan's speed scaling; None when TOTG cannot time them."""
        msg = self._trajectory_msg_type()
        msg.joint_trajectory.joint_names = list(plan.joint_names)
        msg.joint_trajectory.points = [
            JointTrajectoryPoint(positions=[float(v) for v in q]) for q in (from_joints, *segment.joints)
        ]
        trajectory = self._trajectory_type(self.moveit.get_robot_model())
        trajectory.joint_model_group_name = self.group
        with self.moveit.get_planning_scene_monitor().read_only() as scene:
            trajectory.set_robot_trajectory_msg(scene.current_state, msg)  # fingers etc. as they are now
        speed = plan.plan.speed_scaling
        timed = trajectory.apply_totg_time_parameterization(
            speed,
            speed,
            path_tolerance=float(self.totg["path_tolerance_rad"]),
            resample_dt=float(self.totg["resample_dt_s"]),
        )
        return trajectory if timed else None

    def _move_gripper(self, state: str, what: str) -> tuple[str, str]:
        """Plan and execute the hand to a named state; ("", "") on success, else (failure_stage, message)."""
        self._hand.set_start_state_to_current_state()
        self._hand.set_goal_state(configuration_name=state)
        plan_result = self._hand.plan()
        if not plan_result:
            return "execute", f"MoveIt found no motion plan for {what}"
        return self._run(plan_result.trajectory, what)

    def _run(self, trajectory: Any, what: str) -> tuple[str, str]:
        if self._stop.is_set():  # stopped while preparing: nothing is executing yet, so do not start
            return "cancelled", f"stopped before {what}"
        status = self.moveit.execute(trajectory, controllers=[])
        if self._stop.is_set():
            return "cancelled", f"stopped during {what}"
        if not status:
            return "execute", f"execution of {what} failed: {getattr(status, 'status', status)}"
        return "", ""

    def execute(self, plan: ValidatedPlan, should_stop: Callable[[], bool], instruction: str = "") -> ExecutionResult:
        # `instruction` is not judged here: MoveIt has no scene model to tell which object reached the
        # tray (outcome_source stays "none" until an operator judges the trial).
        plan = require_validated(plan)
        self._stop.clear()
        result = ExecutionResult(success=False, outcome_source="executor")

        def stopping() -> bool:
            return self._stop.is_set() or should_stop()

        def fail(stage: str, message: str) -> ExecutionResult:
            result.failure_stage, result.message = stage, message
            return result

        drift = plan.start_drift(self.joint_positions())
        if drift:
            return fail("execute", drift)
        joints = plan.start_joints
        # The hand must be open before the approach, whatever it did last.
        for step in (GripperAction("open", close=False), *plan.steps):
            if stopping():
                return fail("cancelled", f"stopped before {step.name}")
            if isinstance(step, MotionSegment):
                trajectory = self.segment_trajectory(plan, step, joints)
                if trajectory is None:
                    return fail("execute", f"TOTG could not time the validated {step.name} path")
                stage, message = self._run(trajectory, step.name)
                result.ee_path.append(self.tcp_pose().translation)
                if stage:
                    return fail(stage, message)
                error = plan.tracking_error(step, self.joint_positions())
                if error:
                    return fail("execute", error)
                joints = step.joints[-1]
            elif isinstance(step, GripperAction):
                state = self.gripper_states["close" if step.close else "open"]
                stage, message = self._move_gripper(state, f"gripper {step.name}")
                # A real gripper closing on an object stalls before "close": that is a grasp, not an error.
                if stage == "cancelled":
                    return fail(stage, message)
                if stage and not (step.close and stage == "execute"):
                    return fail({"grasp": "grasp", "release": "place"}.get(step.name, "execute"), message)
        # Without a scene model MoveIt cannot tell whether the object reached the tray; success here
        # means the whole validated motion executed.
        result.success, result.message = True, "pick-and-place motion executed"
        return result
