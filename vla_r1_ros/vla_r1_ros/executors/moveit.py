"""MoveIt 2 as an `ArmExecutor`, through moveit_py (MoveItPy), for a real or ros2_control Panda.

moveit_py exists only on a machine with MoveIt 2 installed (apt `ros-jazzy-moveit-py`); this module
imports it only when an executor is made, so the rest of the package works without it (the tests
exercise this class against a recording double of moveit_py). Settings: config/moveit_py.yaml
(section `vla_r1`), which is also the moveit_cpp file handed to MoveItPy.

The sequence follows moveit2_tutorials' motion_planning_python_api: for every goal,
`set_start_state_to_current_state()`, `set_goal_state(pose_stamped_msg=…, pose_link=…)`,
`plan(single_plan_parameters=…)`, `robot.execute(trajectory, controllers=[])`; the gripper moves to
the "hand" group's named states ("open", "close" in moveit_resources_panda's SRDF).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from geometry_msgs.msg import Pose, PoseStamped

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
            from moveit.planning import PlanRequestParameters
        except ImportError as exc:
            raise MoveItUnavailable("moveit_py is not installed (moveit.core, moveit.planning)") from exc
        self._robot_state_type = RobotState
        self._plan_request_type = PlanRequestParameters
        self.moveit = moveit
        self.group = settings["planning_group"]
        self.hand_group = settings["hand_group"]
        self.pose_link = settings["pose_link"]
        self.base_frame = settings["base_frame"]
        self.gripper_states = dict(settings["gripper_states"])
        self.ik_timeout_s = float(settings["ik_timeout_s"])
        self.segment_planners = dict(settings["segment_planners"])
        limits = settings["joint_limits"]
        self.joint_names = tuple(limits["names"])
        self._limits = JointLimits(
            np.asarray(limits["lower"], float),
            np.asarray(limits["upper"], float),
            np.asarray(limits["max_velocity"], float),
        )
        # Plan poses are of the TCP; MoveIt's goal is for pose_link: goal = base_T_tcp · (pose_link_T_tcp)^-1.
        self._link_T_tcp = RigidTransform.from_config(settings["tcp_in_pose_link"])
        self._arm = moveit.get_planning_component(self.group)
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

    def goal_pose(self, tcp: RigidTransform) -> PoseStamped:
        """The PoseStamped goal for `pose_link` that puts the TCP at `tcp` (base frame)."""
        msg = PoseStamped()
        msg.header.frame_id = self.base_frame
        msg.pose = _pose_msg(tcp @ self._link_T_tcp.inverse())
        return msg

    def solve_ik(
        self, position: np.ndarray, quat_xyzw: np.ndarray, seed_joints: np.ndarray | None = None
    ) -> np.ndarray | None:
        state = self._robot_state_type(self.moveit.get_robot_model())
        if seed_joints is not None:
            state.set_joint_group_positions(self.group, np.asarray(seed_joints, dtype=float))
        goal = self.goal_pose(RigidTransform.from_pose(position, quat_xyzw)).pose
        if not state.set_from_ik(self.group, goal, self.pose_link, self.ik_timeout_s):
            return None
        return np.asarray(state.get_joint_group_positions(self.group), dtype=float)

    # --- execution --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        manager = self.moveit.get_trajactory_execution_manager()  # moveit_py's own spelling (Jazzy)
        manager.stop_execution()

    def _plan_request(self, segment: str, speed_scaling: float) -> Any:
        params = self._plan_request_type(self.moveit, self.segment_planners[segment])
        params.max_velocity_scaling_factor = float(speed_scaling)
        params.max_acceleration_scaling_factor = float(speed_scaling)
        return params

    def _move(self, component: Any, params: Any, what: str, **goal: Any) -> tuple[str, str]:
        """Plan and execute one goal; ("", "") on success, else (failure_stage, message)."""
        component.set_start_state_to_current_state()
        component.set_goal_state(**goal)
        plan_result = component.plan(single_plan_parameters=params) if params is not None else component.plan()
        if not plan_result:
            return "ik", f"MoveIt found no motion plan for {what}"
        if self._stop.is_set():  # stopped while planning: nothing is executing yet, so do not start
            return "cancelled", f"stopped before {what}"
        status = self.moveit.execute(plan_result.trajectory, controllers=[])
        if self._stop.is_set():
            return "cancelled", f"stopped during {what}"
        if not status:
            return "execute", f"execution of {what} failed: {getattr(status, 'status', status)}"
        return "", ""

    def execute(self, plan: ValidatedPlan, should_stop: Callable[[], bool]) -> ExecutionResult:
        plan = require_validated(plan)
        self._stop.clear()
        result = ExecutionResult(success=False)

        def stopping() -> bool:
            return self._stop.is_set() or should_stop()

        # The hand must be open before the approach, whatever it did last.
        for step in (GripperAction("open", close=False), *plan.steps):
            if stopping():
                result.failure_stage, result.message = "cancelled", f"stopped before {step.name}"
                return result
            if isinstance(step, MotionSegment):
                params = self._plan_request(step.name, plan.plan.speed_scaling)
                for i, target in enumerate(step.targets):
                    what = f"{step.name} goal {i}"
                    stage, message = self._move(
                        self._arm, params, what, pose_stamped_msg=self.goal_pose(target), pose_link=self.pose_link
                    )
                    result.ee_path.append(self.tcp_pose().translation)
                    if stage:
                        result.failure_stage, result.message = stage, message
                        return result
            elif isinstance(step, GripperAction):
                state = self.gripper_states["close" if step.close else "open"]
                stage, message = self._move(self._hand, None, f"gripper {step.name}", configuration_name=state)
                # A real gripper closing on an object stalls before "close": that is a grasp, not an error.
                if stage == "cancelled":
                    result.failure_stage, result.message = stage, message
                    return result
                if stage and not (step.close and stage == "execute"):
                    result.failure_stage = {"grasp": "grasp", "release": "place"}.get(step.name, "execute")
                    result.message = message
                    return result
        # Without a scene model MoveIt cannot tell whether the object reached the tray; success here
        # means the whole validated motion executed.
        result.success, result.message = True, "pick-and-place motion executed"
        return result
