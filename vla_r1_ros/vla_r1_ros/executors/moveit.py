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

Collisions: the workcell's boxes (core/collision.py: table, camera mount, tray) are collision objects
(moveit_msgs/CollisionObject) of MoveIt's planning scene, applied through the planning scene monitor's
`read_write()` scene (`apply_collision_object`). Each validated joint sample is checked by the scene
itself, in the scene's own current state: on a copy of the live scene, its `current_state` is moved to
the sample and `is_state_colliding(joint_model_group_name=…)` checks it. While carrying, the held
object is attached to the hand with `process_attached_collision_object`, which in MoveIt attaches it
to that scene's current state (moveit2 jazzy `planning_scene.cpp`); a RobotState made apart from the
scene carries no attached body, so checking one would never see what the hand holds. A colliding
sample is named by narrowing down on copies of the scene: which of our obstacles alone still collides,
then which link stops colliding once the allowed collision matrix permits it.

Fresh state: `MoveItPy.execute` returns when the controller reports the goal reached, but the planning
scene's current state follows the robot's joint states only through the state monitor (and the scene
takes them throttled, every 30 ms: planning_scene_monitor.cpp `dt_state_update_`). So after every motion
the executor waits for a joint state stamped after it ended (`wait_for_current_robot_state`) before it
reads anything: the tracking check, the finger width, the path. No such state within `state_wait_s`
ends the trial at `execute`: a robot whose joint states stopped is not judged from old ones.

Grasp verification: after closing, the hand group's joint positions (the Franka hand's finger joint
states, as the planning scene monitor receives them) give the finger width; below `min_held_width_m`
the grasp is empty, the trial fails at `grasp` — judged by the gripper (outcome_source `gripper`): that
grasp certainly failed — and the arm opens and backs up the checked descent. The width is read again
after every segment the object is carried through (lift, carry, lower): fingers that closed past
`min_held_width_m` on the way lost the object (a slip), the same certain `grasp` failure. Everything
else an executed trial ends with is judged by nobody (outcome_source `none`): MoveIt has no model of
where the objects are.

The executed path: while each segment runs, a thread reads the TCP from the scene's current state every
`path_sample_period_s` (the joint states the state monitor receives during the motion), so the episode's
`executed_ee_path` is the measured path, densely, not one point per segment.

Every moveit_py name used here exists in MoveIt 2's Jazzy bindings (moveit2 `jazzy`,
`moveit_py/src/moveit/**` and `moveit_py/moveit/**/*.pyi`); test/moveit_jazzy_double.py mirrors them.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import Pose
from rclpy.clock import Clock, ClockType
from trajectory_msgs.msg import JointTrajectoryPoint

from vla_r1_ros.core.collision import (
    HELD_OBJECT,
    NOTHING_SEEN,
    Box,
    Collision,
    CollisionCheck,
    CollisionWorld,
    SeenObstacles,
    tray_pose_boxes,
)
from vla_r1_ros.core.geometry import RigidTransform
from vla_r1_ros.core.outcomes import ExecutionResult, FailureStage, OutcomeSource
from vla_r1_ros.core.planning import CARRYING_SEGMENTS, GripperAction, JointLimits, MotionSegment, ValidatedPlan
from vla_r1_ros.executors.base import ExecutorBase, empty_grasp, require_validated
from vla_r1_ros.nodes.conversions import pose_msg, transform_from_pose

SENSORS_3D_FILE = "sensors_3d.yaml"  # beside moveit_py.yaml in this package's config/


class MoveItUnavailable(RuntimeError):
    """moveit_py (or moveit_configs_utils) is not installed: the `moveit` executor needs a MoveIt 2 install."""


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
    builder = (
        builder.robot_description(file_path=settings["robot_description_file"])
        .trajectory_execution(file_path=settings["trajectory_execution_file"])
        .moveit_cpp(file_path=moveit_py_yaml)
    )
    if settings["collision"]["octomap_sensors"]:  # MoveIt's own octomap: see config/sensors_3d.yaml's caveat
        builder = builder.sensors_3d(file_path=str(Path(moveit_py_yaml).with_name(SENSORS_3D_FILE)))
    return MoveItPy(node_name=node_name, config_dict=builder.to_moveit_configs().to_dict())


class MoveItExecutor(ExecutorBase):
    name = "moveit"

    def __init__(self, moveit: Any, settings: dict[str, Any], world: CollisionWorld):
        """`moveit`: a MoveItPy (see `make_moveit_py`); `settings`: the `vla_r1` section of moveit_py.yaml;
        `world`: the workcell's boxes and checked links (core/collision.py), in MoveIt's planning frame."""
        try:
            from moveit.core.robot_state import RobotState
            from moveit.core.robot_trajectory import RobotTrajectory
            from moveit_msgs.msg import AttachedCollisionObject, CollisionObject
            from moveit_msgs.msg import RobotTrajectory as RobotTrajectoryMsg
            from shape_msgs.msg import SolidPrimitive
        except ImportError as exc:
            raise MoveItUnavailable("moveit_py is not installed (moveit.core, moveit_msgs, shape_msgs)") from exc
        super().__init__()
        self._robot_state_type = RobotState
        self._trajectory_type = RobotTrajectory
        self._trajectory_msg_type = RobotTrajectoryMsg
        self._collision_object_type = CollisionObject
        self._attached_object_type = AttachedCollisionObject
        self._primitive_type = SolidPrimitive
        self.moveit = moveit
        self.base_frame = world.frame
        self.group = settings["planning_group"]
        self.hand_group = settings["hand_group"]
        self.observe_state = settings["observe_state"]
        self.pose_link = settings["pose_link"]
        self.gripper_states = dict(settings["gripper_states"])
        self.gripper_opening_m = float(settings["gripper_opening_m"])
        self.ik_timeout_s = float(settings["ik_timeout_s"])
        self.totg = dict(settings["time_parameterization"])
        self.min_held_width_m = float(settings["min_held_width_m"])
        self.state_wait_s = float(settings["state_wait_s"])
        self.path_sample_period_s = float(settings["path_sample_period_s"])
        collision = settings["collision"]
        self.collision_group = str(collision["group"])
        self.collision_links = world.robot_links
        self.touch_links = tuple(collision["hand_touch_links"])
        limits = settings["joint_limits"]
        self.joint_names = tuple(limits["names"])
        self._limits = JointLimits(
            np.asarray(limits["lower"], float),
            np.asarray(limits["upper"], float),
            np.asarray(limits["max_velocity"], float),
        )
        # Plan poses are of the TCP; MoveIt's IK is for pose_link: base_T_link = base_T_tcp · (link_T_tcp)^-1.
        self._link_T_tcp = RigidTransform.from_config(settings["tcp_in_pose_link"])
        self._monitor = moveit.get_planning_scene_monitor()
        self._hand = moveit.get_planning_component(self.hand_group)
        self._arm = moveit.get_planning_component(self.group)
        self.obstacles = world.obstacles
        self.tray_wall_m = world.tray_wall_m
        self.arm_links = world.arm_links
        with self._monitor.read_write() as scene:
            for box in self.obstacles:
                scene.apply_collision_object(self._object_msg(box, self.base_frame, box.pose))

    def configuration_problems(self) -> list[str]:
        """What moveit_py.yaml names that this robot's MoveIt setup lacks: the arm and hand groups (the
        arm's joints as `joint_limits.names`), the pose, collision and touch links in them, the SRDF
        states for the gripper and the observe pose, an active controller for each group."""
        model = self.moveit.get_robot_model()
        problems, links = [], set()
        for group in (self.group, self.hand_group):
            joint_group = model.get_joint_model_group(group) if model.has_joint_model_group(group) else None
            if joint_group is None:
                problems.append(f"no joint model group {group!r} in the robot's SRDF")
                continue
            links.update(joint_group.link_model_names)
            if group == self.group and tuple(joint_group.active_joint_model_names) != self.joint_names:
                problems.append(
                    f"group {group!r} moves {list(joint_group.active_joint_model_names)}, "
                    f"not joint_limits.names {list(self.joint_names)}"
                )
            if not self.moveit.get_trajectory_execution_manager().ensure_active_controllers_for_group(group):
                problems.append(f"no active controller moves group {group!r}")
        if links:
            named = (self.pose_link, *self.collision_links, *self.touch_links)
            problems += [f"link {link!r} is in neither group" for link in dict.fromkeys(named) if link not in links]
        for component, states in (
            (self._arm, (self.observe_state,)),
            (self._hand, tuple(self.gripper_states.values())),
        ):
            known = set(component.named_target_states)
            problems += [
                f"no SRDF state {state!r} for group {component.planning_group_name!r}"
                for state in states
                if state not in known
            ]
        return problems

    # --- kinematics for the validator ------------------------------------------------------------

    def joint_limits(self) -> JointLimits:
        return self._limits

    def joint_positions(self) -> np.ndarray:
        with self._monitor.read_only() as scene:
            return np.asarray(scene.current_state.get_joint_group_positions(self.group), dtype=float)

    def tcp_pose(self) -> RigidTransform:
        with self._monitor.read_only() as scene:
            link_pose = transform_from_pose(scene.current_state.get_pose(self.pose_link))
        return link_pose @ self._link_T_tcp

    def arm_chain(self) -> np.ndarray:
        """The base, each of the arm links' origins (`world.arm_links`) and the TCP, as the planning scene
        monitor has the arm now (the model's root frame, the plans' base frame)."""
        with self._monitor.read_only() as scene:
            state = scene.current_state
            links = [np.asarray(state.get_global_link_transform(link), float)[:3, 3] for link in self.arm_links]
        return np.array([np.zeros(3), *links, self.tcp_pose().translation])

    def link_pose(self, tcp: RigidTransform) -> Pose:
        """The pose of `pose_link` that puts the TCP at `tcp`; both in the robot model's root frame, which
        is the plans' base frame (camera.yaml `frames.base`)."""
        return pose_msg(tcp @ self._link_T_tcp.inverse())

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

    # --- collisions -------------------------------------------------------------------------------

    def _object_msg(self, box: Box, frame_id: str, pose: RigidTransform) -> Any:
        """A moveit_msgs/CollisionObject ADD of one box (a shape_msgs/SolidPrimitive BOX at `pose`)."""
        primitive = self._primitive_type()
        primitive.type = self._primitive_type.BOX
        primitive.dimensions = [float(v) for v in box.size]
        msg = self._collision_object_type()
        msg.header.frame_id = frame_id
        msg.id = box.name
        msg.primitives = [primitive]
        msg.primitive_poses = [pose_msg(pose)]
        msg.operation = self._collision_object_type.ADD
        return msg

    def _remove_msg(self, object_id: str) -> Any:
        msg = self._collision_object_type()
        msg.header.frame_id = self.base_frame
        msg.id = object_id
        msg.operation = self._collision_object_type.REMOVE
        return msg

    def _held_msg(self, held: Box) -> Any:
        """The held object attached to pose_link (its box is given in the TCP frame); the hand and the
        fingers may touch it."""
        attached = self._attached_object_type()
        attached.link_name = self.pose_link
        attached.object = self._object_msg(held, self.pose_link, self._link_T_tcp @ held.pose)
        attached.touch_links = list(self.touch_links)
        return attached

    def _move_to(self, scene: Any, joints: np.ndarray) -> None:
        """Put `scene`'s own current state (a private copy's: it keeps what is attached to it) at `joints`
        with the hand open (its widest on the way to a grasp)."""
        state = scene.current_state
        state.set_to_default_values(self.hand_group, self.gripper_states["open"])
        state.set_joint_group_positions(self.group, np.asarray(joints, dtype=float))
        state.update()
        scene.current_state = state  # setCurrentState: a no-op on the scene's own state, kept if a copy

    def _colliding(self, scene: Any) -> bool:
        """MoveIt's check of the scene's current state, its attached bodies included."""
        return bool(scene.is_state_colliding(joint_model_group_name=self.collision_group, verbose=False))

    def collision_check(self, grasp_point: np.ndarray, held: Box, seen: SeenObstacles = NOTHING_SEEN) -> CollisionCheck:
        """MoveIt's own check on copies of the live planning scene, one without and one with the held
        object; on them the tray stands where it was measured and the depth clutter boxes are collision
        objects (`seen`: the live scene keeps neither). `grasp_point` is not needed: MoveIt's scene holds no
        model of the objects to pick, and the clutter already leaves the picked object out."""
        with self._monitor.read_only() as live:
            free = copy.copy(live)
        trial_boxes = [*(tray_pose_boxes(seen.tray, self.tray_wall_m) if seen.tray is not None else ()), *seen.clutter]
        for box in trial_boxes:  # ADD of an existing id (a tray part) replaces it
            free.apply_collision_object(self._object_msg(box, self.base_frame, box.pose))
        names = list(dict.fromkeys([*(box.name for box in self.obstacles), *(box.name for box in trial_boxes)]))
        carrying = copy.copy(free)
        carrying.process_attached_collision_object(self._held_msg(held))

        def check(joints: np.ndarray, is_carrying: bool) -> Collision | None:
            scene = carrying if is_carrying else free
            self._move_to(scene, joints)
            if not self._colliding(scene):
                return None
            return self._name_collision(scene, is_carrying, names)

        return check

    def _name_collision(self, scene: Any, carrying: bool, names: list[str]) -> Collision:
        """Which of our obstacles (`names`) the scene's current state hits (the first that alone still
        collides, on a copy that keeps that state) and with which link (the one whose allowed-collision
        entry makes it stop)."""
        for name in names:
            alone = copy.copy(scene)
            for other in names:
                if other != name:
                    alone.apply_collision_object(self._remove_msg(other))
            if not self._colliding(alone):
                continue
            acm = alone.allowed_collision_matrix
            for link in (*self.collision_links, *((HELD_OBJECT,) if carrying else ())):
                acm.set_entry(link, name, True)
                alone.allowed_collision_matrix = acm
                if not self._colliding(alone):
                    return Collision(link, name, None)
            return Collision("the robot", name, None)
        return Collision("the robot", "itself or another object of MoveIt's planning scene", None)

    # --- execution --------------------------------------------------------------------------------

    def stop(self) -> None:
        super().stop()
        self.moveit.get_trajectory_execution_manager().stop_execution()

    def finger_width(self) -> float:
        """How far apart the fingers are now: the hand group's joints (each finger's travel) as the
        planning scene monitor has them from the Franka hand's joint states."""
        with self._monitor.read_only() as scene:
            fingers = np.asarray(scene.current_state.get_joint_group_positions(self.hand_group), dtype=float)
        # Two finger joints (one a mimic) or one: either way twice the mean travel.
        return float(2.0 * np.mean(fingers))

    def joint_trajectory(self, plan: ValidatedPlan, samples: np.ndarray, from_joints: np.ndarray) -> Any:
        """Joint `samples` (validated), starting at `from_joints`, as a RobotTrajectory of the arm group
        timed by TOTG within the plan's speed scaling; None when TOTG cannot time them."""
        msg = self._trajectory_msg_type()
        msg.joint_trajectory.joint_names = list(plan.joint_names)
        msg.joint_trajectory.points = [
            JointTrajectoryPoint(positions=[float(v) for v in q]) for q in (from_joints, *samples)
        ]
        trajectory = self._trajectory_type(self.moveit.get_robot_model())
        trajectory.joint_model_group_name = self.group
        with self._monitor.read_only() as scene:
            trajectory.set_robot_trajectory_msg(scene.current_state, msg)  # fingers etc. as they are now
        speed = plan.plan.speed_scaling
        timed = trajectory.apply_totg_time_parameterization(
            speed,
            speed,
            path_tolerance=float(self.totg["path_tolerance_rad"]),
            resample_dt=float(self.totg["resample_dt_s"]),
        )
        return trajectory if timed else None

    def _open_gripper(self) -> None:
        self._move_gripper(self.gripper_states["open"], "gripper open after an empty grasp")

    def cycle_gripper(self) -> tuple[float, float]:
        widths = []
        for state in ("open", "close", "open"):
            stage, message = self._move_gripper(self.gripper_states[state], f"gripper {state}")
            # An empty gripper reaches each named state: anything else is a gripper that does not work.
            if stage is not None:
                raise RuntimeError(message)
            widths.append(self.finger_width())
        return widths[0], widths[1]

    def _follow(
        self, plan: ValidatedPlan, samples: np.ndarray, from_joints: np.ndarray, stopping: Callable[[], bool]
    ) -> list[np.ndarray]:
        trajectory = self.joint_trajectory(plan, samples, from_joints)
        path: list[np.ndarray] = []
        if trajectory is not None and not stopping():
            self._run(trajectory, "retreat after an empty grasp", path)
        return path

    def _move_gripper(self, state: str, what: str) -> tuple[FailureStage | None, str]:
        """Plan and execute the hand to a named state; (None, "") on success, else (failure_stage, message)."""
        return self._move_to_named(self._hand, state, what)

    def _move_to_named(self, component: Any, state: str, what: str) -> tuple[FailureStage | None, str]:
        """Plan (collision-aware, MoveIt's pipeline) and execute a group to an SRDF named state."""
        component.set_start_state_to_current_state()
        component.set_goal_state(configuration_name=state)
        plan_result = component.plan()
        if not plan_result:
            return FailureStage.EXECUTE, f"MoveIt found no motion plan for {what}"
        return self._run(plan_result.trajectory, what)

    def observe(self, should_stop: Callable[[], bool]) -> str:
        """The SRDF state `observe_state` (config/moveit_py.yaml), planned by MoveIt around the scene."""
        self._stop.clear()
        if should_stop():
            return "stopped before the observe pose"
        stage, message = self._move_to_named(self._arm, self.observe_state, f"the observe pose {self.observe_state!r}")
        return message if stage else ""

    def _run(self, trajectory: Any, what: str, path: list[np.ndarray] | None = None) -> tuple[FailureStage | None, str]:
        """Execute `trajectory` and wait for the joint states that show where it ended; (None, "") on
        success, else (failure_stage, message). `path`: the TCP positions measured during the motion are
        appended to it, the one it ended at last."""
        if self._stop.is_set():  # stopped while preparing: nothing is executing yet, so do not start
            return FailureStage.CANCELLED, f"stopped before {what}"
        with self._sampling_tcp(path):
            status = self.moveit.execute(trajectory, controllers=[])
        if self._stop.is_set():
            return FailureStage.CANCELLED, f"stopped during {what}"
        if not status:
            return FailureStage.EXECUTE, f"execution of {what} failed: {getattr(status, 'status', status)}"
        if not self._wait_for_fresh_state():
            return FailureStage.EXECUTE, (
                f"no joint state newer than the end of {what} within {self.state_wait_s:g} s: "
                "the robot's joint states stopped (is joint_state_broadcaster running?)"
            )
        if path is not None:
            path.append(self.tcp_pose().translation)
        return None, ""

    def _wait_for_fresh_state(self) -> bool:
        """Whether the scene's current state got a joint state stamped after now within state_wait_s.
        The time is ROS time: the state monitor compares it with the joint states' header stamps."""
        return bool(
            self._monitor.wait_for_current_robot_state(Clock(clock_type=ClockType.ROS_TIME).now(), self.state_wait_s)
        )

    @contextlib.contextmanager
    def _sampling_tcp(self, path: list[np.ndarray] | None) -> Iterator[None]:
        """While the block runs, append the TCP position to `path` every path_sample_period_s (a new
        position only: the arm standing still adds nothing)."""
        if path is None:
            yield
            return
        done = threading.Event()

        def sample() -> None:
            while not done.wait(self.path_sample_period_s):
                point = self.tcp_pose().translation
                if not path or not np.array_equal(point, path[-1]):
                    path.append(point)

        sampler = threading.Thread(target=sample, name="tcp-path-sampler", daemon=True)
        sampler.start()
        try:
            yield
        finally:
            done.set()
            sampler.join()

    def execute(self, plan: ValidatedPlan, should_stop: Callable[[], bool], instruction: str = "") -> ExecutionResult:
        # `instruction` is not judged here: MoveIt has no scene model to tell which object reached the
        # tray (outcome_source none until an operator judges the trial; `gripper` for an empty grasp).
        plan = require_validated(plan)
        self._stop.clear()
        stopping = self._stopping(should_stop)
        result = ExecutionResult(success=False, outcome_source=OutcomeSource.NONE)
        drift = plan.start_drift(self.joint_positions())
        if drift:
            return result.fail(FailureStage.EXECUTE, drift)
        joints = plan.start_joints
        holding = False  # between a grasp the fingers confirmed and the release
        # The hand must be open before the approach, whatever it did last (unless it holds what it puts down).
        opening = () if plan.plan.holds_from_start else (GripperAction("open", close=False),)
        for step in (*opening, *plan.steps):
            if stopping():
                return result.fail(FailureStage.CANCELLED, f"stopped before {step.name}")
            if isinstance(step, MotionSegment):
                trajectory = self.joint_trajectory(plan, step.joints, joints)
                if trajectory is None:
                    return result.fail(FailureStage.EXECUTE, f"TOTG could not time the validated {step.name} path")
                stage, message = self._run(trajectory, step.name, result.ee_path)
                if stage:
                    return result.fail(stage, message)
                error = plan.tracking_error(step, self.joint_positions())
                if error:
                    return result.fail(FailureStage.EXECUTE, error)
                if holding and step.name in CARRYING_SEGMENTS:
                    width = self.finger_width()
                    if empty_grasp(width, self.min_held_width_m):
                        # Fingers that close past an object's width on the way hold nothing any more.
                        result.outcome_source = OutcomeSource.GRIPPER
                        return result.fail(
                            FailureStage.GRASP,
                            f"the object slipped out of the gripper during {step.name}: the fingers closed to "
                            f"{width * 1000:.0f} mm (< {self.min_held_width_m * 1000:.0f} mm)",
                        )
                joints = step.joints[-1]
            elif isinstance(step, GripperAction):
                state = self.gripper_states["close" if step.close else "open"]
                stage, message = self._move_gripper(state, f"gripper {step.name}")
                # A real gripper closing on an object stalls before "close": that is a grasp, not an error.
                if stage == FailureStage.CANCELLED:
                    return result.fail(stage, message)
                if stage and not (step.close and stage == FailureStage.EXECUTE):
                    failed = {"grasp": FailureStage.GRASP, "release": FailureStage.PLACE}
                    return result.fail(failed.get(step.name, FailureStage.EXECUTE), message)
                if step.close:
                    # The hand stalling on an object is not a failed _run: wait for its joint states here.
                    if stage and not self._wait_for_fresh_state():
                        return result.fail(FailureStage.EXECUTE, f"no joint state after gripper {step.name}")
                    empty = empty_grasp(self.finger_width(), self.min_held_width_m)
                    if empty:
                        # The one certain verdict on a real arm: the fingers closed on nothing.
                        result.outcome_source = OutcomeSource.GRIPPER
                        return self._grasp_failed(result, plan, empty, joints, stopping)
                holding = step.close
        # Without a scene model MoveIt cannot tell whether the object reached the tray; success here
        # means the whole validated motion executed (judged by nobody: outcome_source none).
        result.success, result.message = True, "pick-and-place motion executed"
        return result
