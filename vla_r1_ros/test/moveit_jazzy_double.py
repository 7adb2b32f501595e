"""A test double of MoveIt 2's Python API (moveit_py) and of the moveit_msgs messages the MoveIt
executor builds, for machines without MoveIt (this one).

Written from MoveIt's Jazzy sources, and exposing only names that exist there:
- moveit2, branch `jazzy` at 4d841063574c31a21f69ae12a39fddb77a7eb984: the stubs
  `moveit_py/moveit/planning.pyi`, `moveit_py/moveit/core/{planning_scene,robot_state,robot_trajectory,
  robot_model,collision_detection,planning_interface,controller_manager}.pyi` and the pybind sources
  `moveit_py/src/moveit/moveit_ros/moveit_cpp/{moveit_cpp,planning_component}.cpp`,
  `moveit_py/src/moveit/moveit_ros/planning_scene_monitor/planning_scene_monitor.cpp`,
  `moveit_py/src/moveit/moveit_ros/trajectory_execution_manager/trajectory_execution_manager.cpp`,
  `moveit_py/src/moveit/moveit_core/{planning_scene/planning_scene.cpp,robot_state/robot_state.cpp,
  robot_trajectory/robot_trajectory.cpp,robot_model/robot_model.cpp,robot_model/joint_model_group.cpp,
  collision_detection/collision_matrix.cpp,planning_interface/planning_response.cpp,
  controller_manager/controller_manager.cpp}` (method and keyword names as in their `.def(...)`);
- moveit_msgs, branch `ros2` at ec3ba4bfa2ec37df576bcf7a087e5a4ab88d79a4 (version 2.6.0, Jazzy's
  release): `msg/CollisionObject.msg`, `msg/AttachedCollisionObject.msg`, `msg/RobotTrajectory.msg`.

`JAZZY_API` lists, per class, the public names of the real API that the double implements (a subset:
what the executor needs). Every class has `__slots__` and no `__dict__`, like the pybind classes, so
reading or writing any other attribute raises AttributeError (test_moveit_executor checks both).

Behind the API the robot is PyBullet's Panda (the simulator's URDF): `set_from_ik` and `get_pose` run
PyBullet's kinematics for panda_link8, and `PlanningScene.is_state_colliding` checks the state's links
(and the bodies attached to that state) against the boxes of the scene's collision objects with the
simulator's collision checker, honouring the allowed collision matrix.

Where attached bodies live follows moveit2 `jazzy` at 4d841063574c31a21f69ae12a39fddb77a7eb984:
- `moveit_core/planning_scene/src/planning_scene.cpp`: `processAttachedCollisionObjectMsg` attaches
  the body to the scene's own current state (`robot_state_.value().attachBody(...)`, after removing a
  world object of the same id); `isStateColliding(state, group)` runs `checkCollision(req, res, state)`
  on the state it is GIVEN, whose attached bodies are the only ones checked (collision_env_fcl.cpp
  `constructFCLObjectRobot`: `state.getAttachedBodies`); `isStateColliding(group)` checks the scene's
  current state; `setCurrentState(RobotState)` is `getCurrentStateNonConst() = state`, a copy that
  replaces the attached bodies too (robot_state.cpp `copyFrom`); `clone` (a scene's `__copy__`)
  decouples from the parent with a copy of its current state.
- `moveit_py/src/moveit/moveit_core/planning_scene/planning_scene.cpp`: `current_state` is a property
  (`getCurrentState`, reference_internal; setter `setCurrentState(RobotState)`), and
  `is_state_colliding` has both overloads, `(joint_model_group_name, verbose)` and
  `(robot_state, joint_model_group_name, verbose)`.
So a RobotState made fresh from the robot model carries no attached body, and checking it never sees
what the hand holds. Self-collisions are not modelled. Executing an arm
trajectory moves the double's arm through its waypoints (`World.playback_period_s` each) to the last
(or its second, for a `stall_segment`); executing the hand to "close" leaves the fingers at
`World.object_width_m` (0 when there is nothing to hold).

When the scene learns of the robot's motion follows moveit2 `jazzy` at the same commit:
`moveit_ros/planning/planning_scene_monitor/src/planning_scene_monitor.cpp` takes the state monitor's
joint states into the scene throttled (`dt_state_update_` 0.03 s), and `waitForCurrentRobotState(t,
wait_time)` (bound without argument names, so positional only) waits until the state monitor holds a
joint state stamped at or after `t` (`current_state_monitor.cpp` `waitForCurrentState`: the stamps are
ROS time, and rclcpp refuses to compare times of different clocks), then updates the scene at once;
`t` of 0 ns returns False. So the live scene's current state shows where the robot was until 30 ms after
a motion ended, or until the executor waited for a fresh joint state; with `World.joint_states_flowing`
False no state arrives and the wait fails after `wait_time`.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
import types
from typing import Any

import numpy as np
import pybullet as p
import pybullet_data
from geometry_msgs.msg import Pose
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from vla_r1_ros.core.collision import HELD_OBJECT, Box
from vla_r1_ros.core.config import load_config
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.sim.arm import SimPanda
from vla_r1_ros.sim.collision import CollisionScene, PandaCollisionChecker
from vla_r1_ros.sim.physics import PhysicsClock

JAZZY_API: dict[str, frozenset[str]] = {
    "MoveItPy": frozenset(
        {
            "execute",
            "get_planning_component",
            "get_planning_scene_monitor",
            "get_robot_model",
            "get_trajectory_execution_manager",
            "shutdown",
        }
    ),
    "PlanningComponent": frozenset(
        {
            "get_named_target_state_values",
            "get_start_state",
            "plan",
            "set_goal_state",
            "set_path_constraints",
            "set_start_state",
            "set_start_state_to_current_state",
            "set_workspace",
            "unset_workspace",
            "named_target_states",
            "planning_group_name",
        }
    ),
    "PlanningSceneMonitor": frozenset(
        {
            "clear_octomap",
            "process_attached_collision_object",
            "process_collision_object",
            "read_only",
            "read_write",
            "request_planning_scene_state",
            "start_scene_monitor",
            "start_state_monitor",
            "stop_scene_monitor",
            "stop_state_monitor",
            "update_frame_transforms",
            "wait_for_current_robot_state",
            "new_planning_scene_message",
            "name",
        }
    ),
    "LockedPlanningSceneContextManagerRO": frozenset(),
    "LockedPlanningSceneContextManagerRW": frozenset(),
    "TrajectoryExecutionManager": frozenset(
        {
            "allowed_execution_duration_scaling",
            "allowed_goal_duration_margin",
            "allowed_start_tolerance",
            "are_controllers_active",
            "clear",
            "enable_execution_duration_monitoring",
            "ensure_active_controller",
            "ensure_active_controllers",
            "ensure_active_controllers_for_group",
            "ensure_active_controllers_for_joints",
            "execute",
            "execute_and_wait",
            "execution_duration_monitoring",
            "execution_velocity_scaling",
            "get_last_execution_status",
            "is_controller_active",
            "is_managing_controllers",
            "process_event",
            "push",
            "set_allowed_execution_duration_scaling",
            "set_allowed_goal_duration_margin",
            "set_allowed_start_tolerance",
            "set_execution_velocity_scaling",
            "set_wait_for_trajectory_completion",
            "stop_execution",
            "wait_for_execution",
            "wait_for_trajectory_completion",
        }
    ),
    "PlanningScene": frozenset(
        {
            "current_state",
            "name",
            "apply_collision_object",
            "check_collision",
            "check_collision_unpadded",
            "check_self_collision",
            "get_frame_transform",
            "is_path_valid",
            "is_state_colliding",
            "is_state_constrained",
            "is_state_valid",
            "knows_frame_transform",
            "process_attached_collision_object",
            "process_octomap",
            "process_planning_scene_world",
            "remove_all_collision_objects",
            "set_object_color",
            "set_current_state",
            "save_geometry_to_file",
            "load_geometry_from_file",
            "planning_frame",
            "planning_scene_message",
            "robot_model",
            "transforms",
            "allowed_collision_matrix",
        }
    ),
    "AllowedCollisionMatrix": frozenset({"clear", "get_entry", "remove_entry", "set_entry"}),
    "JointModelGroup": frozenset(
        {
            "name",
            "link_model_names",
            "joint_model_names",
            "active_joint_model_names",
            "active_joint_model_bounds",
            "eef_name",
            "satisfies_position_bounds",
        }
    ),
    "RobotModel": frozenset(
        {
            "name",
            "model_frame",
            "root_joint_name",
            "joint_model_group_names",
            "joint_model_groups",
            "end_effectors",
            "has_joint_model_group",
            "get_joint_model_group",
        }
    ),
    "RobotState": frozenset(
        {
            "state_info",
            "joint_accelerations",
            "joint_efforts",
            "joint_positions",
            "joint_velocities",
            "clear_attached_bodies",
            "get_frame_transform",
            "get_global_link_transform",
            "get_jacobian",
            "get_joint_group_accelerations",
            "get_joint_group_positions",
            "get_joint_group_velocities",
            "get_pose",
            "set_from_ik",
            "set_joint_group_accelerations",
            "set_joint_group_active_positions",
            "set_joint_group_positions",
            "set_joint_group_velocities",
            "set_to_default_values",
            "set_to_random_positions",
            "update",
            "dirty",
            "robot_model",
            "state_tree",
        }
    ),
    "RobotTrajectory": frozenset(
        {
            "joint_model_group_name",
            "apply_totg_time_parameterization",
            "apply_ruckig_smoothing",
            "get_robot_trajectory_msg",
            "get_waypoint_durations",
            "set_robot_trajectory_msg",
            "unwind",
            "average_segment_duration",
            "duration",
            "robot_model",
        }
    ),
    "MotionPlanResponse": frozenset({"error_code", "planner_id", "planning_time", "start_state", "trajectory"}),
    "ExecutionStatus": frozenset({"status"}),
    # moveit_msgs 2.6.0 fields and constants.
    "CollisionObject": frozenset(
        {
            "header",
            "pose",
            "id",
            "type",
            "primitives",
            "primitive_poses",
            "meshes",
            "mesh_poses",
            "planes",
            "plane_poses",
            "subframe_names",
            "subframe_poses",
            "operation",
            "ADD",
            "REMOVE",
            "APPEND",
            "MOVE",
        }
    ),
    "AttachedCollisionObject": frozenset({"link_name", "object", "touch_links", "detach_posture", "weight"}),
    "RobotTrajectoryMsg": frozenset({"joint_trajectory", "multi_dof_joint_trajectory"}),
}

ARM_GROUP, HAND_GROUP = "panda_arm", "hand"
PLANNING_FRAME = "panda_link0"
HAND_STATES = {"open": 0.04, "close": 0.0}  # moveit_resources_panda's SRDF: each finger joint (m)
ARM_STATES = {"ready": (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)}  # its "panda_arm" group_state "ready"
# Its groups: panda_arm the chain panda_link0 -> panda_link8, hand the hand and both fingers.
GROUP_LINKS = {
    ARM_GROUP: tuple(f"panda_link{i}" for i in range(1, 9)),
    HAND_GROUP: ("panda_hand", "panda_leftfinger", "panda_rightfinger"),
}
GROUP_JOINTS = {ARM_GROUP: tuple(f"panda_joint{i}" for i in range(1, 8)), HAND_GROUP: ("panda_finger_joint1",)}
NAMED_STATES = {ARM_GROUP: tuple(ARM_STATES), HAND_GROUP: tuple(HAND_STATES)}
PANDA_LINK8 = 7  # its index in PyBullet's panda.urdf
STATE_UPDATE_PERIOD_S = 0.03  # planning_scene_monitor.cpp dt_state_update_: joint states into the scene


class World:
    """The double's robot and what the test inspects: calls, arm and hand state, stops."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        # The robot's joints (a test may put them anywhere; the scene sees that at once). A motion the
        # double executes reaches the scene's current state only as the monitor would (`seen_state`).
        self.arm_q = np.zeros(7)
        self.finger_q = HAND_STATES["open"]  # each finger joint
        self.joint_states_flowing = True  # False: the robot's joint states stopped
        self.controlled_groups = {ARM_GROUP, HAND_GROUP}  # groups an active controller can move
        self.playback_period_s = 0.002  # an executed arm trajectory's time per waypoint
        self._seen: tuple[np.ndarray, float] = (self.arm_q.copy(), self.finger_q)
        self._state_due: float | None = None  # when the scene takes the last motion's end (monotonic)
        self.object_width_m: float | None = None  # what the hand closes on (None: nothing)
        self.slip_segment: int | None = None  # during this arm trajectory the held object slips out
        self.stall_segment: int | None = None  # this arm trajectory stops after its first sample
        self.untimeable = False  # apply_totg_time_parameterization fails
        self.arm_trajectories = 0
        self.stops = 0
        self.is_state_colliding_calls = 0
        config = copy.deepcopy(load_config("workcell"))
        config["robot"]["ee_link"] = PANDA_LINK8  # MoveIt's IK tip for the Panda
        self._lock = threading.RLock()
        self.kinematics = SimPanda(
            PhysicsClock(-1, self._lock, config["physics"], False), config, RigidTransform.identity()
        )
        self.checker = PandaCollisionChecker(load_config("workcell"))
        self._fk_client = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self._fk_client)
        self._fk_robot = p.loadURDF(config["robot"]["urdf"], useFixedBase=True, physicsClientId=self._fk_client)

    def seen_state(self) -> tuple[np.ndarray, float]:
        """(arm, finger) as the planning scene monitor's scene has them: the robot's joints, except the
        end of the last executed motion until STATE_UPDATE_PERIOD_S after it (while joint states flow)."""
        due = self._state_due
        if due is None or (self.joint_states_flowing and time.monotonic() >= due):
            self._state_due = None
            self._seen = (self.arm_q.copy(), self.finger_q)
        return self._seen

    def move_robot(self, arm_q: Any = None, finger_q: float | None = None, *, last: bool = True) -> None:
        """The robot moved (an executed trajectory): the scene sees it at once while the motion goes on
        and joint states flow; the motion's end (`last`) only after STATE_UPDATE_PERIOD_S."""
        self.seen_state()
        if arm_q is not None:
            self.arm_q = np.array(arm_q, dtype=float)
        if finger_q is not None:
            self.finger_q = finger_q
        if last or not self.joint_states_flowing:
            self._state_due = time.monotonic() + STATE_UPDATE_PERIOD_S
        else:
            self._state_due = None

    def wait_for_joint_state(self, wait_time: float) -> bool:
        """A joint state after now reaches the scene (the state monitor's wait), or none within wait_time."""
        if not self.joint_states_flowing:
            time.sleep(wait_time)
            return False
        self._state_due = None
        return True

    def close(self) -> None:
        self.kinematics.close()
        self.checker.close()
        p.disconnect(physicsClientId=self._fk_client)

    def link8_pose(self, q: np.ndarray) -> RigidTransform:
        return self.link_pose(q, PANDA_LINK8)

    def link_pose(self, q: np.ndarray, link: int) -> RigidTransform:
        for j, value in enumerate(q):
            p.resetJointState(self._fk_robot, j, float(value), physicsClientId=self._fk_client)
        state = p.getLinkState(self._fk_robot, link, computeForwardKinematics=True, physicsClientId=self._fk_client)
        return RigidTransform.from_pose(state[4], state[5])

    def link_index(self, name: str) -> int:
        for j in range(p.getNumJoints(self._fk_robot, physicsClientId=self._fk_client)):
            if p.getJointInfo(self._fk_robot, j, physicsClientId=self._fk_client)[12].decode() == name:
                return j
        raise RuntimeError(f"no link {name!r} in the robot model")


WORLD: World | None = None  # set by `install`


def _world() -> World:
    assert WORLD is not None, "install the double first"
    return WORLD


def _pose_transform(msg: Pose) -> RigidTransform:
    o = msg.orientation
    return RigidTransform.from_pose([msg.position.x, msg.position.y, msg.position.z], [o.x, o.y, o.z, o.w])


# --- moveit_msgs ------------------------------------------------------------------------------------


class CollisionObject:
    __slots__ = (
        "header",
        "id",
        "mesh_poses",
        "meshes",
        "operation",
        "plane_poses",
        "planes",
        "pose",
        "primitive_poses",
        "primitives",
        "subframe_names",
        "subframe_poses",
        "type",
    )  # fmt: skip
    ADD, REMOVE, APPEND, MOVE = 0, 1, 2, 3

    def __init__(self) -> None:
        self.header, self.pose, self.id = Header(), Pose(), ""
        self.type = None  # object_recognition_msgs/ObjectType: not installed here, never used
        self.primitives, self.primitive_poses, self.meshes, self.mesh_poses = [], [], [], []
        self.planes, self.plane_poses, self.subframe_names, self.subframe_poses = [], [], [], []
        self.operation = CollisionObject.ADD


class AttachedCollisionObject:
    __slots__ = ("detach_posture", "link_name", "object", "touch_links", "weight")

    def __init__(self) -> None:
        self.link_name, self.object, self.touch_links = "", CollisionObject(), []
        self.detach_posture, self.weight = JointTrajectory(), 0.0


class RobotTrajectoryMsg:
    __slots__ = ("joint_trajectory", "multi_dof_joint_trajectory")

    def __init__(self) -> None:
        self.joint_trajectory = JointTrajectory()
        self.multi_dof_joint_trajectory = MultiDOFJointTrajectory()


def _boxes(msg: CollisionObject) -> list[Box]:
    """The BOX primitives of a collision object, posed in its header frame."""
    from shape_msgs.msg import SolidPrimitive

    frame = _pose_transform(msg.pose)
    boxes = []
    for primitive, pose in zip(msg.primitives, msg.primitive_poses, strict=True):
        if primitive.type != SolidPrimitive.BOX:
            raise NotImplementedError("the double models BOX primitives only")
        boxes.append(Box(msg.id, np.array(primitive.dimensions, float), frame @ _pose_transform(pose)))
    return boxes


# --- moveit.core ------------------------------------------------------------------------------------


class JointModelGroup:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def link_model_names(self) -> list[str]:
        return list(GROUP_LINKS[self._name])

    @property
    def active_joint_model_names(self) -> list[str]:
        return list(GROUP_JOINTS[self._name])


class RobotModel:
    __slots__ = ()

    @property
    def name(self) -> str:
        return "panda"

    def has_joint_model_group(self, joint_model_group_name: str) -> bool:
        return joint_model_group_name in GROUP_LINKS

    def get_joint_model_group(self, joint_model_group_name: str) -> JointModelGroup | None:
        """`getJointModelGroup`: a missing group is logged and null (None)."""
        return JointModelGroup(joint_model_group_name) if joint_model_group_name in GROUP_LINKS else None


class RobotState:
    __slots__ = ("_arm", "_attached", "_fingers", "_model")

    def __init__(self, robot_model: RobotModel) -> None:
        assert isinstance(robot_model, RobotModel)
        self._model = robot_model
        self._arm = np.zeros(7)
        self._fingers = np.zeros(2)
        # Bodies attached to this state (moveit::core::RobotState's attached_body_map_): id -> (link,
        # boxes, touch links). A state made from the robot model has none.
        self._attached: dict[str, tuple[str, list[Box], tuple[str, ...]]] = {}

    def __copy__(self) -> RobotState:
        """`RobotState{*self}`: joint values and attached bodies copied."""
        clone = RobotState(self._model)
        clone._arm, clone._fingers = self._arm.copy(), self._fingers.copy()
        clone._attached = copy.deepcopy(self._attached)
        return clone

    @property
    def robot_model(self) -> RobotModel:
        return self._model

    def set_joint_group_positions(self, joint_model_group_name: str, position_values: Any) -> None:
        values = np.asarray(position_values, dtype=float)
        if joint_model_group_name == ARM_GROUP:
            self._arm = values.reshape(7).copy()
        elif joint_model_group_name == HAND_GROUP:
            self._fingers = values.reshape(2).copy()
        else:
            raise RuntimeError(f"no joint model group {joint_model_group_name!r}")

    def get_joint_group_positions(self, joint_model_group_name: str) -> np.ndarray:
        return {ARM_GROUP: self._arm, HAND_GROUP: self._fingers}[joint_model_group_name].copy()

    def set_to_default_values(self, joint_model_group_name: str, name: str) -> bool:
        assert joint_model_group_name == HAND_GROUP
        self._fingers = np.full(2, HAND_STATES[name])
        return True

    def update(self, force: bool = False, type: str = "all") -> None:
        pass  # transforms are computed on demand here

    def set_from_ik(
        self, joint_model_group_name: str, geometry_pose: Pose, tip_name: str, timeout: float = 0.0
    ) -> bool:
        assert isinstance(geometry_pose, Pose) and tip_name == "panda_link8" and joint_model_group_name == ARM_GROUP
        goal = _pose_transform(geometry_pose)
        q = _world().kinematics.solve_ik(goal.translation, goal.quat_xyzw, self._arm)
        if q is None:
            return False
        self._arm = q
        return True

    def get_global_link_transform(self, link_name: str) -> np.ndarray:
        """The link's 4x4 transform in the model frame (the binding returns Eigen's matrix as an array)."""
        world = _world()
        return world.link_pose(self._arm, world.link_index(link_name)).as_matrix()

    def get_pose(self, link_name: str) -> Pose:
        assert link_name == "panda_link8"
        pose = _world().link8_pose(self._arm)
        msg = Pose()
        msg.position.x, msg.position.y, msg.position.z = (float(v) for v in pose.translation)
        msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = (float(v) for v in pose.quat_xyzw)
        return msg


class RobotTrajectory:
    __slots__ = ("_group", "_model", "_msg", "_named_goal")

    def __init__(self, robot_model: RobotModel) -> None:
        assert isinstance(robot_model, RobotModel)
        self._model, self._group, self._msg = robot_model, "", RobotTrajectoryMsg()
        self._named_goal: str | None = None  # a planned motion's SRDF state, for the double's execute

    @property
    def robot_model(self) -> RobotModel:
        return self._model

    @property
    def joint_model_group_name(self) -> str:
        return self._group

    @joint_model_group_name.setter
    def joint_model_group_name(self, name: str) -> None:
        self._group = name

    def set_robot_trajectory_msg(self, robot_state: RobotState, msg: RobotTrajectoryMsg) -> None:
        assert isinstance(robot_state, RobotState) and isinstance(msg, RobotTrajectoryMsg)
        self._msg = copy.deepcopy(msg)

    def get_robot_trajectory_msg(self, joint_filter: list[str] | None = None) -> RobotTrajectoryMsg:
        return copy.deepcopy(self._msg)

    def apply_totg_time_parameterization(
        self,
        velocity_scaling_factor: float,
        acceleration_scaling_factor: float,
        *,
        path_tolerance: float = 0.1,
        resample_dt: float = 0.1,
        min_angle_change: float = 0.001,
    ) -> bool:
        _world().calls.append(
            ("trajectory", "totg", velocity_scaling_factor, acceleration_scaling_factor, path_tolerance, resample_dt)
        )
        return not _world().untimeable


class AllowedCollisionMatrix:
    __slots__ = ("_allowed",)

    def __init__(self, names: list[str] | None = None, default_entry: bool = False) -> None:
        names = names or []
        self._allowed = {frozenset((a, b)): default_entry for a in names for b in names if a != b}

    def get_entry(self, name1: str, name2: str) -> tuple[bool, str]:
        allowed = self._allowed.get(frozenset((name1, name2)), False)
        return allowed, "ALWAYS" if allowed else "NEVER"

    def set_entry(self, name1: str, name2: str, allowed: bool) -> None:
        self._allowed[frozenset((name1, name2))] = bool(allowed)

    def remove_entry(self, name1: str, name2: str) -> None:
        self._allowed.pop(frozenset((name1, name2)), None)

    def clear(self) -> None:
        self._allowed.clear()


class PlanningScene:
    __slots__ = ("_acm", "_live", "_objects", "_state")

    def __init__(self, live: bool = False) -> None:
        self._objects: dict[str, list[Box]] = {}
        self._acm = AllowedCollisionMatrix()
        self._state = RobotState(RobotModel())  # the scene's own current state, with its attached bodies
        # The monitor's scene: its current state's joints follow the robot's joint states (the double's
        # World), as the planning scene monitor's state monitor updates them.
        self._live = live

    @property
    def planning_frame(self) -> str:
        return PLANNING_FRAME

    @property
    def current_state(self) -> RobotState:
        """The scene's own state object (pybind reference_internal): changing it changes the scene."""
        if self._live:
            arm_q, finger_q = _world().seen_state()
            self._state.set_joint_group_positions(ARM_GROUP, arm_q)
            self._state.set_joint_group_positions(HAND_GROUP, [finger_q, finger_q])
        return self._state

    @current_state.setter
    def current_state(self, robot_state: RobotState) -> None:
        self.set_current_state(robot_state)

    def set_current_state(self, robot_state: RobotState) -> None:
        """`getCurrentStateNonConst() = state`: a copy, attached bodies included (none for a fresh state)."""
        assert isinstance(robot_state, RobotState)
        if robot_state is not self._state:
            self._state = copy.copy(robot_state)

    @property
    def allowed_collision_matrix(self) -> AllowedCollisionMatrix:
        return self._acm

    @allowed_collision_matrix.setter
    def allowed_collision_matrix(self, acm: AllowedCollisionMatrix) -> None:
        self._acm = copy.deepcopy(acm)

    def __copy__(self) -> PlanningScene:
        """`PlanningScene::clone`: a decoupled scene with copies of the world, the matrix and the current
        state (and so of the bodies attached to it)."""
        clone = PlanningScene()
        clone._objects = copy.deepcopy(self._objects)
        clone._acm = copy.deepcopy(self._acm)
        clone._state = copy.copy(self.current_state)
        return clone

    def apply_collision_object(self, collision_object_msg: CollisionObject, color_msg: Any = None) -> None:
        msg = collision_object_msg
        assert isinstance(msg, CollisionObject)
        if msg.operation == CollisionObject.REMOVE:
            self._objects.pop(msg.id, None)
            return
        if msg.header.frame_id != PLANNING_FRAME:
            raise NotImplementedError(f"the double takes collision objects in {PLANNING_FRAME} only")
        self._objects[msg.id] = _boxes(msg)

    def process_attached_collision_object(self, object: AttachedCollisionObject) -> bool:
        assert isinstance(object, AttachedCollisionObject)
        if object.object.header.frame_id != object.link_name:
            raise NotImplementedError("the double takes attached objects posed in their link's frame only")
        self._objects.pop(object.object.id, None)  # STEP 2: a world object of that id leaves the world
        attached = (object.link_name, _boxes(object.object), tuple(object.touch_links))
        self.current_state._attached[object.object.id] = attached  # STEP 3: onto the scene's current state
        return True

    def is_state_colliding(self, *args: Any, **kwargs: Any) -> bool:
        """Both overloads of the binding: `(joint_model_group_name, verbose=False)` checks the scene's own
        current state, `(robot_state, joint_model_group_name, verbose=False)` the state given. Either
        way the links and the bodies attached to THAT state, of the whole robot (group "")."""
        if (args and isinstance(args[0], RobotState)) or "robot_state" in kwargs:
            robot_state, group, _verbose = _given_state_overload(*args, **kwargs)
        else:
            robot_state = self.current_state
            group, _verbose = _current_state_overload(*args, **kwargs)
        assert isinstance(robot_state, RobotState)
        if group != "":
            raise NotImplementedError("the double checks the whole robot (group '') only")
        world = _world()
        world.is_state_colliding_calls += 1
        attached = next(iter(robot_state._attached.values()), None)
        held, link = (
            (None, None)
            if attached is None
            else (Box(HELD_OBJECT, attached[1][0].size, attached[1][0].pose), attached[0])
        )
        scene = CollisionScene(tuple(box for boxes in self._objects.values() for box in boxes), held, link)
        hits = world.checker.contacts(scene, robot_state.get_joint_group_positions(ARM_GROUP), attached is not None)
        return any(not self._acm.get_entry(hit.link, hit.obstacle)[0] for hit in hits)


def _given_state_overload(
    robot_state: RobotState, joint_model_group_name: str, verbose: bool = False
) -> tuple[RobotState, str, bool]:
    return robot_state, joint_model_group_name, verbose


def _current_state_overload(joint_model_group_name: str, verbose: bool = False) -> tuple[str, bool]:
    return joint_model_group_name, verbose


# --- moveit.planning --------------------------------------------------------------------------------


class ExecutionStatus:
    __slots__ = ()

    @property
    def status(self) -> str:
        return "SUCCEEDED"

    def __bool__(self) -> bool:
        return True


class MotionPlanResponse:
    __slots__ = ("_trajectory",)

    def __init__(self, trajectory: RobotTrajectory) -> None:
        self._trajectory = trajectory

    @property
    def trajectory(self) -> RobotTrajectory:
        return self._trajectory

    def __bool__(self) -> bool:
        return True


class PlanningComponent:
    __slots__ = ("_goal", "_group")

    def __init__(self, joint_model_group_name: str, moveit_py_instance: MoveItPy) -> None:
        self._group, self._goal = joint_model_group_name, None

    @property
    def planning_group_name(self) -> str:
        return self._group

    @property
    def named_target_states(self) -> list[str]:
        return list(NAMED_STATES.get(self._group, ()))

    def set_start_state_to_current_state(self) -> None:
        _world().calls.append((self._group, "set_start_state_to_current_state"))

    def set_goal_state(
        self,
        configuration_name: str | None = None,
        robot_state: RobotState | None = None,
        pose_stamped_msg: Any = None,
        pose_link: str | None = None,
        motion_plan_constraints: Any = None,
    ) -> bool:
        _world().calls.append((self._group, "set_goal_state", configuration_name))
        self._goal = configuration_name
        return True

    def plan(
        self,
        single_plan_parameters: Any = None,
        multi_plan_parameters: Any = None,
        planning_scene: Any = None,
        solution_selection_function: Any = None,
        stopping_criterion_callback: Any = None,
    ) -> MotionPlanResponse:
        _world().calls.append((self._group, "plan"))
        trajectory = RobotTrajectory(RobotModel())
        trajectory.joint_model_group_name = self._group
        trajectory._named_goal = self._goal
        return MotionPlanResponse(trajectory)


class LockedPlanningSceneContextManagerRO:
    __slots__ = ("_scene",)

    def __init__(self, scene: PlanningScene) -> None:
        self._scene = scene

    def __enter__(self) -> PlanningScene:
        return self._scene

    def __exit__(self, type: Any, value: Any, traceback: Any) -> None:
        return None


class LockedPlanningSceneContextManagerRW(LockedPlanningSceneContextManagerRO):
    __slots__ = ()


class PlanningSceneMonitor:
    __slots__ = ("_scene",)

    def __init__(self) -> None:
        self._scene = PlanningScene(live=True)

    @property
    def name(self) -> str:
        return "planning_scene_monitor"

    def read_only(self) -> LockedPlanningSceneContextManagerRO:
        return LockedPlanningSceneContextManagerRO(self._scene)

    def read_write(self) -> LockedPlanningSceneContextManagerRW:
        return LockedPlanningSceneContextManagerRW(self._scene)

    def wait_for_current_robot_state(self, t: Any, wait_time: float = 1.0, /) -> bool:
        """`waitForCurrentRobotState(t, wait_time)`: `t` is an rclpy Time (the typecaster reads its
        nanoseconds and clock type) of the joint states' clock, ROS time."""
        from rclpy.clock import ClockType

        _world().calls.append(("monitor", "wait_for_current_robot_state", t, wait_time))
        if t.clock_type != ClockType.ROS_TIME:
            raise RuntimeError("can't compare times with different time sources")
        if t.nanoseconds == 0:
            return False
        return _world().wait_for_joint_state(wait_time)


class TrajectoryExecutionManager:
    __slots__ = ()

    def stop_execution(self, auto_clear: bool = True) -> None:
        _world().stops += 1

    def ensure_active_controllers_for_group(self, group: str) -> bool:
        return group in _world().controlled_groups


class MoveItPy:
    __slots__ = ("_components", "_manager", "_monitor")

    def __init__(
        self,
        node_name: str = "moveit_py",
        name_space: str = "",
        launch_params_filepaths: Any = None,
        config_dict: Any = None,
        provide_planning_service: bool = True,
        remappings: Any = None,
    ) -> None:
        self._components: dict[str, PlanningComponent] = {}
        self._monitor = PlanningSceneMonitor()
        self._manager = TrajectoryExecutionManager()

    def get_planning_component(self, planning_component_name: str) -> PlanningComponent:
        return self._components.setdefault(planning_component_name, PlanningComponent(planning_component_name, self))

    def get_robot_model(self) -> RobotModel:
        return RobotModel()

    def get_planning_scene_monitor(self) -> PlanningSceneMonitor:
        return self._monitor

    def get_trajectory_execution_manager(self) -> TrajectoryExecutionManager:
        return self._manager

    def execute(self, robot_trajectory: RobotTrajectory, controllers: list[str]) -> ExecutionStatus:
        world = _world()
        msg = robot_trajectory.get_robot_trajectory_msg()
        world.calls.append(("robot", "execute", robot_trajectory.joint_model_group_name, msg, tuple(controllers)))
        if robot_trajectory.joint_model_group_name == HAND_GROUP:
            goal = robot_trajectory._named_goal
            closing = goal == "close"
            width = world.object_width_m if closing and world.object_width_m is not None else None
            world.move_robot(finger_q=width / 2 if width is not None else HAND_STATES[goal])
        elif robot_trajectory._named_goal is not None:  # a planned motion to an SRDF state ends there
            world.move_robot(ARM_STATES[robot_trajectory._named_goal])
            world.arm_trajectories += 1
        else:
            path = np.array([pt.positions for pt in msg.joint_trajectory.points])
            if world.arm_trajectories == world.stall_segment:
                path = path[:2]
            for q in path[1:-1]:
                world.move_robot(q, last=False)
                time.sleep(world.playback_period_s)
            # The object slipping out of closed fingers: they close to the "close" state on the way.
            slipped = world.arm_trajectories == world.slip_segment and world.finger_q > HAND_STATES["close"]
            world.move_robot(path[-1], HAND_STATES["close"] if slipped else None)
            world.arm_trajectories += 1
        return ExecutionStatus()

    def shutdown(self) -> None:
        pass


def install(monkeypatch: Any) -> tuple[MoveItPy, World]:
    """Install the double as the `moveit` and `moveit_msgs` packages; returns a MoveItPy and its World."""
    global WORLD
    WORLD = World()
    modules = {
        name: types.ModuleType(name)
        for name in (
            "moveit",
            "moveit.planning",
            "moveit.core",
            "moveit.core.robot_state",
            "moveit.core.robot_trajectory",
            "moveit.core.robot_model",
            "moveit.core.planning_scene",
            "moveit.core.collision_detection",
            "moveit.core.planning_interface",
            "moveit.core.controller_manager",
            "moveit_msgs",
            "moveit_msgs.msg",
        )
    }
    for cls in (MoveItPy, PlanningComponent, PlanningSceneMonitor, TrajectoryExecutionManager,
                LockedPlanningSceneContextManagerRO, LockedPlanningSceneContextManagerRW):  # fmt: skip
        setattr(modules["moveit.planning"], cls.__name__, cls)
    modules["moveit.core.robot_state"].RobotState = RobotState
    modules["moveit.core.robot_trajectory"].RobotTrajectory = RobotTrajectory
    modules["moveit.core.robot_model"].RobotModel = RobotModel
    modules["moveit.core.robot_model"].JointModelGroup = JointModelGroup
    modules["moveit.core.planning_scene"].PlanningScene = PlanningScene
    modules["moveit.core.collision_detection"].AllowedCollisionMatrix = AllowedCollisionMatrix
    modules["moveit.core.planning_interface"].MotionPlanResponse = MotionPlanResponse
    modules["moveit.core.controller_manager"].ExecutionStatus = ExecutionStatus
    msgs = modules["moveit_msgs.msg"]
    msgs.CollisionObject, msgs.AttachedCollisionObject = CollisionObject, AttachedCollisionObject
    msgs.RobotTrajectory = RobotTrajectoryMsg
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return MoveItPy(), WORLD


DOUBLES = (MoveItPy, PlanningComponent, PlanningSceneMonitor, LockedPlanningSceneContextManagerRO,
           LockedPlanningSceneContextManagerRW, TrajectoryExecutionManager, PlanningScene, AllowedCollisionMatrix,
           JointModelGroup, RobotModel, RobotState, RobotTrajectory, MotionPlanResponse, ExecutionStatus,
           CollisionObject, AttachedCollisionObject, RobotTrajectoryMsg)  # fmt: skip
